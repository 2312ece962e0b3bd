"""Counterfactual interpolations of the invertible classifier (paper section 4, Figure 1b).

The classifier is linear in φ: f(x) = wᵀφ(x) + b. To make x read as logit t, move its
representation along w by exactly the needed amount, α = (t − f(x)) / wᵀw, and invert:
x̂ = φ⁻¹(φ(x) + α·w), reusing x's faded-out parts. A grid row shows one image moved to
each column's target logit; the columns are quantiles of the data's logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from two4two.errors import Two4TwoError

QUINTILE_CENTRES = (0.1, 0.3, 0.5, 0.7, 0.9)


def require_invertible(model, name: str = "model"):
    """The model itself, or a clear error when it cannot be inverted."""
    if not all(hasattr(model, attr) for attr in ("encode", "decode", "weight", "logit_of_phi")):
        raise Two4TwoError(f"{name}: a {type(model).__name__} cannot be inverted; counterfactuals need an INN (model arch: inn)")
    return model


def counterfactuals(model, images, targets, batch_size: int = 32):
    """x̂ for every image (rows) and every target logit (columns), unclipped.

    `images`: B × 3 × H × W float tensor in [0, 1]; `targets`: T logits shared by all
    rows, or B × T. Returns a B × T × 3 × H × W tensor and the B original logits.
    """
    import torch

    require_invertible(model)
    targets = torch.as_tensor(targets, dtype=images.dtype, device=images.device)
    if targets.dim() == 1:
        targets = targets.expand(images.shape[0], -1)
    if targets.shape[0] != images.shape[0]:
        raise ValueError(f"targets: {tuple(targets.shape)} does not match {images.shape[0]} images")
    w = model.weight.to(images.dtype)
    rows, logits = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x, t = images[start : start + batch_size], targets[start : start + batch_size]
            enc = model.encode(x)
            f = model.logit_of_phi(enc.phi)
            alpha = (t - f[:, None]) / (w * w).sum()
            n, columns = t.shape
            phi = (enc.phi[:, None] + alpha[:, :, None, None, None] * w).reshape(n * columns, *enc.phi.shape[1:])
            faded = [part.repeat_interleave(columns, dim=0) for part in enc.faded]
            rows.append(model.decode(phi, faded).reshape(n, columns, *x.shape[1:]))
            logits.append(f)
    return torch.cat(rows), torch.cat(logits)


def target_logits(logits: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """The logit values at the given quantiles of a split's logits."""
    quantiles = np.asarray(quantiles, float)
    if quantiles.size == 0 or np.any((quantiles < 0) | (quantiles > 1)):
        raise Two4TwoError(f"quantiles: {quantiles.tolist()} must be a non-empty list of values in [0, 1]")
    return np.quantile(np.asarray(logits, float), quantiles)


def spanning_quantiles(coverage: float, columns: int) -> np.ndarray:
    """`columns` evenly spaced quantiles covering the central `coverage` of the logits."""
    if not 0 < coverage <= 1 or columns < 2:
        raise Two4TwoError(f"coverage {coverage} must be in (0, 1] and columns {columns} at least 2")
    return np.linspace((1 - coverage) / 2, (1 + coverage) / 2, columns)


@dataclass
class CounterfactualGrid:
    images: np.ndarray  # rows × columns × H × W × 3 uint8
    ids: list[str]  # one original image per row
    quantiles: np.ndarray
    targets: np.ndarray  # the column logits
    original_logits: np.ndarray  # per row
    achieved_logits: np.ndarray  # rows × columns: the model's logit on the saved 8-bit image

    def save(self, path: str | Path, title: str = "INN counterfactual interpolations", dpi: int = 110,
             column_titles: Sequence[str] | None = None) -> dict[str, Path]:
        """The grid as a PNG with column labels (default: quantile and logit), and its ids and logits as JSON beside it."""
        from two4two.io import atomic_write_json
        from two4two.plotting import save_image_grid

        titles = column_titles or [f"q {q:.3g}\nlogit {t:+.2f}" for q, t in zip(self.quantiles, self.targets)]
        path = save_image_grid(self.images, titles, path, title, dpi=dpi)
        record = {
            "ids": self.ids,
            "quantiles": self.quantiles.tolist(),
            "target_logits": self.targets.tolist(),
            "original_logits": self.original_logits.tolist(),
            "achieved_logits": self.achieved_logits.tolist(),
        }
        return {"png": path, "json": atomic_write_json(Path(path).with_suffix(".json"), record)}


class Counterfactuals:
    """Explainer: rows of randomly chosen images of a split, each moved to the logits at `quantiles` (an INN only)."""

    def __init__(self, model, rows: int = 10, quantiles: Sequence[float] = QUINTILE_CENTRES):
        require_invertible(model)
        self.model, self.rows, self.quantiles = model, rows, np.asarray(quantiles, float)

    def explain(self, split, seed: int = 0) -> CounterfactualGrid:
        import torch

        from two4two.models.inputs import image_batch
        from two4two.models.training import predict_logits

        if self.rows < 1 or self.rows > len(split):
            raise Two4TwoError(f"rows: {self.rows} must be between 1 and the split's {len(split)} images")
        targets = target_logits(split.logits(self.model), self.quantiles)
        chosen = np.sort(np.random.default_rng(seed).choice(len(split), size=self.rows, replace=False))
        moved, original = counterfactuals(self.model, image_batch(split.images[chosen]), torch.from_numpy(targets).float())
        as_uint8 = (moved.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
        achieved = predict_logits(self.model, as_uint8.reshape(-1, *as_uint8.shape[2:])).reshape(self.rows, len(targets))
        return CounterfactualGrid(
            images=as_uint8,
            ids=[split.params[i].id for i in chosen],
            quantiles=self.quantiles,
            targets=targets,
            original_logits=original.double().numpy(),
            achieved_logits=achieved,
        )
