"""Any Quantus metric on this generator's ground truth, in a few lines:

    import quantus
    from two4two.explain.quantus_adapter import explain_func, quantus_inputs, quantus_model

    batch = quantus_inputs(model, Split("data/quickstart", "test"), region="animal", n=50)
    scores = quantus.RelevanceMassAccuracy()(model=quantus_model(model), **batch, explain_func=explain_func,
                                             explain_func_kwargs={"method": "integrated_gradients"})

`s_batch` is the region's exact mask (the animal, a block group or a block of
two4two.animal.PARTS, or the background): the ground truth Quantus's localisation metrics need and
a photograph never has. `quantus_model` gives Quantus the classifier with two logits (−z, z), so
`y_batch` is the class index; `explain_func` runs any of our attribution methods on whatever model
Quantus hands it (the classifier, or the copy a randomisation metric has scrambled).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from two4two.explain.attribution import _two_class, attribution_method
from two4two.explain.attribution_scores import region_masks
from two4two.models.inputs import image_batch


def quantus_model(model):
    """The classifier as Quantus reads it: an nn.Module in eval mode returning (N, 2) logits (−z, z)."""
    return _two_class(model)


def _our_model(model):
    """The one-logit classifier inside `quantus_model`'s wrapper (or `model` itself, not wrapped)."""
    if not hasattr(model, "invertible"):  # not the wrapper: one of our classifiers as it is
        return model
    return model.encoder.inn if model.invertible else model.net


def explain_func(model, inputs: np.ndarray, targets: np.ndarray, method: str = "integrated_gradients",
                 masks: np.ndarray | None = None, **options: Any) -> np.ndarray:
    """Quantus's `explain_func`: our `method`'s signed maps (N, 1, H, W) of float images (N, 3, H, W)
    in [0, 1]. `masks` only for the silhouette control; `options` go to attribution_method."""
    images = np.ascontiguousarray(np.asarray(inputs, dtype=np.float32).transpose(0, 2, 3, 1))
    maps = attribution_method(method, _our_model(model), **options).attribute(
        images, np.asarray(targets, dtype=np.int64).reshape(-1), masks)
    return maps[:, None]


def quantus_inputs(model, split, region: str = "animal", n: int | None = None, target: str = "predicted",
                   method: str | None = None, **options: Any) -> dict[str, np.ndarray]:
    """A split's first `n` images as Quantus's keyword arguments: `x_batch` (N, 3, H, W) float32 in
    [0, 1], `y_batch` the class explained (the model's prediction, or with target="true" the true
    class), `s_batch` (N, 1, H, W) the region's exact mask; with `method`, also `a_batch`, its maps."""
    if target not in ("predicted", "true"):
        raise ValueError(f"target: {target!r}; allowed: predicted, true")
    images, masks = split.images[:n], split.masks[:n]
    y = (split.logits(model)[:n] > 0).astype(np.int64) if target == "predicted" else split.true_labels[:n].astype(np.int64)
    batch = {"x_batch": image_batch(images).numpy(), "y_batch": y,
             "s_batch": region_masks(masks, region)[:, None].astype(np.float32)}
    if method is not None:
        batch["a_batch"] = explain_func(quantus_model(model), batch["x_batch"], y, method, masks, **options)
    return batch
