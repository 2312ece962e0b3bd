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
    import os

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fig.savefig(partial, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    os.replace(partial, path)
    pyplot().close(fig)
    return path
