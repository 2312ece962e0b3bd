"""Matplotlib set-up shared by the figures: headless backend, one way to save."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, title: str, dpi: int = 110) -> Path:
    """Title, tighten, write (creating the folder; atomically, so no half-written file) and free the figure."""
    from two4two.io import atomic_write

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=dpi, format=path.suffix.lstrip(".") or "png"))
    pyplot().close(fig)
    return path


def figure_png(fig, dpi: int = 110) -> bytes:
    """Tighten, render to PNG bytes (for files written together with others) and free the figure."""
    import io

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


def save_image_grid(images, column_titles, path: str | Path, title: str, dpi: int = 110) -> Path:
    """A rows × columns grid of uint8 images (rows × columns × H × W × 3), titles above the columns."""
    plt = pyplot()
    rows, columns = images.shape[:2]
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.3 * rows + 0.5), squeeze=False)
    for r in range(rows):
        for c in range(columns):
            ax = axes[r, c]
            ax.imshow(images[r, c], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(column_titles[c], fontsize=8)
    return save_figure(fig, path, title, dpi=dpi)
