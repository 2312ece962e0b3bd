"""Nearest training images in a model's own feature space: the 3-NN explanation of Nguyen et al. (2021).

For an image and the model's predicted class y, the k training images of (stored) class y
closest in L2 to the image in the model's penultimate layer, the features its final linear
layer reads: the small CNN's pooled last stage, the INN's φ, torchvision's pooled features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from two4two.errors import Two4TwoError


def penultimate_features(model, images: np.ndarray, batch_size: int = 128, progress: bool = False) -> np.ndarray:
    """N × D float32: the input of the model's last `nn.Linear` for uint8 images (N × H × W × 3)."""
    import torch
    from tqdm import tqdm

    from two4two.models.inputs import image_batch

    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linear:
        raise Two4TwoError(f"model: a {type(model).__name__} has no final linear layer to read features before")
    captured: list[torch.Tensor] = []
    hook = linear[-1].register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].detach().flatten(1)))
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(images), batch_size), desc="features", unit="batch", disable=not progress, leave=False):
                captured.clear()
                model(image_batch(images[start:start + batch_size], device))
                out.append(captured[-1].float().cpu().numpy())
    finally:
        hook.remove()
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@dataclass
class NearestTraining:
    """The training pool's features and labels; `query` finds each image's k nearest of a given class."""

    features: np.ndarray  # P × D
    labels: np.ndarray  # P: stored class (0 peaky, 1 stretchy)
    indices: np.ndarray  # P: index of each pool image in its split

    @classmethod
    def of(cls, model, split, pool: int | None = None, seed: int = 0, progress: bool = False) -> "NearestTraining":
        """Features of `pool` randomly chosen images of `split` (all when None)."""
        n = len(split)
        indices = np.arange(n) if pool is None or pool >= n else np.sort(np.random.default_rng(seed).choice(n, pool, replace=False))
        labels = np.array([split.params[i].label for i in indices])
        return cls(penultimate_features(model, split.images[indices], progress=progress), labels, indices)

    def query(self, features: np.ndarray, classes: np.ndarray, k: int = 3) -> np.ndarray:
        """N × k split indices of the k nearest pool images of class `classes[i]`, nearest first."""
        out = np.empty((len(features), k), np.int64)
        for i, (f, c) in enumerate(zip(features, classes)):
            same = np.flatnonzero(self.labels == c)
            if len(same) < k:
                raise Two4TwoError(f"neighbours: the training pool has {len(same)} images of class {c}; {k} are needed")
            d = ((self.features[same] - f) ** 2).sum(axis=1)
            out[i] = self.indices[same[np.argsort(d, kind="stable")[:k]]]
        return out
