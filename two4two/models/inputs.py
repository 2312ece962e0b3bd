"""The one conversion from stored images to model input."""

from __future__ import annotations

import numpy as np
import torch


def image_batch(images: np.ndarray, device=None) -> torch.Tensor:
    """uint8 N × H × W × 3 images (or float ones already in [0, 1], as an imputation makes them)
    as the float N × 3 × H × W batch in [0, 1] every model here reads."""
    images = np.asarray(images)
    x = torch.from_numpy(images)
    if device is not None:
        x = x.to(device)
    x = x.permute(0, 3, 1, 2).float()
    return x if np.issubdtype(images.dtype, np.floating) else x / 255


def shifted(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each uint8 image (N × H × W × 3) moved by its own random offset of up to `max_shift` pixels
    in x and y, the uncovered border filled by repeating the edge: a training augmentation that
    keeps the class and the animal whole (it stays well inside the frame) but not the exact image."""
    n, h, w = images.shape[:3]
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="edge")
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    out = np.empty_like(images)
    for i in range(n):
        out[i] = padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    return out
