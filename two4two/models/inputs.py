"""The one conversion from stored images to model input."""

from __future__ import annotations

import numpy as np
import torch


def image_batch(images: np.ndarray, device=None) -> torch.Tensor:
    """uint8 N × H × W × 3 images as the float N × 3 × H × W batch in [0, 1] every model here reads."""
    x = torch.from_numpy(np.asarray(images))
    if device is not None:
        x = x.to(device)
    return x.permute(0, 3, 1, 2).float() / 255
