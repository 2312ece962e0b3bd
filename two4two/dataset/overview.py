"""A glance at a rendered split: images above their colour-coded masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from two4two.layout import MASK_LABELS, DatasetError, load_image, load_mask, read_split


def mask_palette() -> np.ndarray:
    """A distinct colour per mask label (background black) for viewing masks."""
    import matplotlib

    colours = matplotlib.colormaps["tab10"](np.arange(len(MASK_LABELS) - 1))[:, :3]
    return (np.vstack([[0, 0, 0], colours]) * 255).astype(np.uint8)


def write_overview(root: str | Path, split: str, path: str | Path | None = None, count: int = 8) -> Path:
    """A PNG grid: the first `count` images of a split, their masks below (colour-coded)."""
    params = read_split(root, split)[:count]
    if not params:
        raise DatasetError(f"{root}/{split}: no samples to show")
    images = [load_image(root, split, p.id) for p in params]
    masks = [mask_palette()[load_mask(root, split, p.id)] for p in params]
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    grid = np.full((2 * h + 3, len(params) * (w + 3) - 3, 3), 255, np.uint8)
    for k, (img, mask) in enumerate(zip(images, masks)):
        x = k * (w + 3)
        grid[: img.shape[0], x : x + img.shape[1]] = img
        grid[h + 3 : h + 3 + mask.shape[0], x : x + mask.shape[1]] = mask
    path = Path(path) if path else Path(root) / f"overview_{split}.png"
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)
    return path
