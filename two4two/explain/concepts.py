"""Automatically discovered concepts (paper section 4, Figure 1c), after Zhang et al. 2021.

Zhang et al. factorise a convolutional layer's activations over many images with NMF:
every spatial position's C-vector is a mix of a few concept vectors, and a concept's
score map says where in the image it sits. Our layers have negative values (the INN's
φ), so, like the paper, we use a plain (signed) factorisation: principal components of
the (N·H·W) × C matrix of positions, via the SVD. We centre the positions first, so a
component's two signs are both "more than usual" in one direction or the other.

Of the `components` factors we keep the `keep` whose per-image score (the spatial mean
of its score map) correlates most with the logit (Pearson r). A component's sign is
arbitrary, so each is oriented to r ≥ 0: its positive pole goes with higher logits
(more Stretchy), its negative pole with lower ones. The paper did not label concepts
by class, because they correlate only weakly with the logit (r 0.21–0.34); it showed
each concept "separately in two consecutive rows" of five images. We read these two
rows as the two poles of the signed concept: the images scoring highest, then those
scoring lowest, each with the region of that pole highlighted (the upsampled score map
dims everything else).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from two4two.errors import Two4TwoError
from two4two.io import atomic_write_json

DIM_OUTSIDE = 0.25  # brightness kept outside a concept's region in the figure


def concept_layer(model) -> tuple[str, Callable]:
    """The layer concepts are read from, as (name, images → B × C × H × W activations).

    The paper took a layer with an 8 × 8 feature map halfway through its INN: enough
    spatial resolution to point at a region, deep enough to be high level.
    SmallCNN: `stage2` (8 × 8 at 64 px). InvertibleClassifier: φ, the flow output the
    linear classifier reads (48 × 8 × 8 at 64 px with the default levels).
    """
    from two4two.models.classifier import SmallCNN
    from two4two.models.inn import InvertibleClassifier

    if isinstance(model, InvertibleClassifier):
        return f"phi (INN level {model.classifier_level})", lambda x: model.encode(x).phi
    if isinstance(model, SmallCNN):
        return "stage2", lambda x: model.stage2(model.stage1(model.stem(x)))
    raise Two4TwoError(f"model: no concept layer is defined for a {type(model).__name__}; concepts support small_cnn and inn")


@dataclass
class ConceptFit:
    """Concept vectors of one layer and how each correlates with the logit.

    `components` (k × C) are orthonormal, ordered by explained variance and oriented to
    r ≥ 0; `kept` indexes the `keep` most correlated ones, most correlated first.
    """

    mean: np.ndarray  # C: the average position, removed before factorising
    components: np.ndarray  # k × C
    explained_variance_ratio: np.ndarray  # k: share of the positions' variance per component
    r: np.ndarray  # k: Pearson r of the per-image score with the logit (≥ 0)
    p: np.ndarray  # k: its two-sided p-value
    kept: np.ndarray  # indices into components

    def score_maps(self, activations: np.ndarray) -> np.ndarray:
        """Where each concept sits: N × C × H × W activations → N × k × H × W scores."""
        a = np.asarray(activations, float)
        return np.einsum("nchw,kc->nkhw", a - self.mean[None, :, None, None], self.components)

    def image_scores(self, activations: np.ndarray) -> np.ndarray:
        """How much of each concept an image has: the spatial mean of its score map (N × k)."""
        return self.score_maps(activations).mean(axis=(2, 3))

    def reconstruct(self, maps: np.ndarray) -> np.ndarray:
        """Activations back from score maps: mean + Σ score · concept vector."""
        return np.einsum("nkhw,kc->nchw", maps, self.components) + self.mean[None, :, None, None]

    @property
    def explained_variance(self) -> float:
        """Share of the positions' variance the k components reconstruct."""
        return float(self.explained_variance_ratio.sum())


def fit_concepts(activations: np.ndarray, logits: np.ndarray, components: int = 10, keep: int = 5) -> ConceptFit:
    """Factorise N × C × H × W activations into `components` concepts; keep the `keep` most logit-correlated."""
    from scipy.stats import pearsonr

    a = np.asarray(activations, float)
    logits = np.asarray(logits, float).reshape(-1)
    if a.ndim != 4:
        raise Two4TwoError(f"activations: expected N × C × H × W, got shape {a.shape}")
    n, c, h, w = a.shape
    if logits.shape[0] != n:
        raise Two4TwoError(f"logits: {logits.shape[0]} values for {n} images")
    if n < 3:
        raise Two4TwoError(f"images: {n} are too few to correlate with the logit; use at least 3")
    if not 1 <= components <= min(c, n * h * w):
        raise Two4TwoError(f"components: {components} must be between 1 and the layer's {c} channels")
    if not 1 <= keep <= components:
        raise Two4TwoError(f"keep: {keep} must be between 1 and components ({components})")
    positions = a.transpose(0, 2, 3, 1).reshape(-1, c)
    mean = positions.mean(axis=0)
    centred = positions - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    total = float((centred**2).sum())
    ratio = singular[:components] ** 2 / total if total > 0 else np.zeros(components)
    vectors = vt[:components]
    per_image = (centred @ vectors.T).reshape(n, h * w, components).mean(axis=1)
    constant = np.ptp(logits) == 0  # a constant score or logit correlates with nothing: r 0, p 1
    r, p = np.array([(0.0, 1.0) if constant or np.ptp(s) == 0 else tuple(pearsonr(s, logits)) for s in per_image.T]).T
    sign = np.where(r < 0, -1.0, 1.0)
    vectors, r = vectors * sign[:, None], r * sign
    kept = np.argsort(-r, kind="stable")[:keep]
    return ConceptFit(mean=mean, components=vectors, explained_variance_ratio=ratio, r=r, p=p, kept=kept)


def highlight(images: np.ndarray, maps: np.ndarray, scale: float) -> np.ndarray:
    """Images (N × H × W × 3 uint8) with everything but the map's positive region dimmed.

    `maps` (N × h × w) are upsampled bilinearly to the image size; a map value of
    `scale` or more keeps full brightness, zero or less keeps DIM_OUTSIDE of it.
    """
    import torch

    size = images.shape[1:3]
    up = torch.nn.functional.interpolate(torch.as_tensor(maps, dtype=torch.float32)[:, None], size=size, mode="bilinear", align_corners=False)
    weight = (up[:, 0].numpy() / max(scale, 1e-12)).clip(0, 1)
    light = DIM_OUTSIDE + (1 - DIM_OUTSIDE) * weight[..., None]
    return (images.astype(float) * light).round().clip(0, 255).astype(np.uint8)


@dataclass
class ConceptExplanation:
    """The kept concepts of a model on a split, with example images for both poles."""

    fit: ConceptFit
    layer: str
    split: str
    image_count: int
    seed: int
    examples: np.ndarray  # keep × 2 (positive, negative pole) × examples × H × W × 3 uint8, highlighted
    example_ids: list[list[list[str]]]  # keep × 2 × examples
    example_scores: np.ndarray  # keep × 2 × examples: the images' concept scores

    def summary(self) -> list[dict]:
        """One record per kept concept: its component, r, p and explained variance."""
        f = self.fit
        return [
            {"component": int(i), "r": float(f.r[i]), "p": float(f.p[i]), "explained_variance": float(f.explained_variance_ratio[i])}
            for i in f.kept
        ]

    def format_table(self) -> str:
        lines = [f"{'concept':>7}  {'component':>9}  {'r':>6}  {'p':>9}  {'expl. var.':>10}"]
        for rank, row in enumerate(self.summary(), 1):
            lines.append(f"{rank:>7}  {row['component']:>9}  {row['r']:>6.3f}  {row['p']:>9.2g}  {row['explained_variance']:>10.3f}")
        lines.append(f"{len(self.fit.components)} components explain {self.fit.explained_variance:.3f} of the variance of {self.layer}")
        return "\n".join(lines)

    def save(self, path: str | Path, title: str | None = None, dpi: int = 110, show_r: bool = True) -> dict[str, Path]:
        """The figure (two rows per concept: positive pole, negative pole) and a JSON sidecar.

        `title` and `show_r=False` give participants a figure without the technical labels.
        """
        from two4two.plotting import pyplot, save_figure

        plt = pyplot()
        keep, _, columns = self.examples.shape[:3]
        fig, axes = plt.subplots(2 * keep, columns, figsize=(1.2 * columns + 0.6, 1.2 * 2 * keep + 0.5), squeeze=False)
        for c, row in enumerate(self.summary()):
            for pole, sign in enumerate("+−"):
                for e in range(columns):
                    ax = axes[2 * c + pole, e]
                    ax.imshow(self.examples[c, pole, e], interpolation="nearest")
                    ax.set_xticks([]), ax.set_yticks([])
                r_label = f"\nr = {row['r']:.2f}" if show_r and pole == 0 else ""
                axes[2 * c + pole, 0].set_ylabel(f"concept {c + 1} {sign}{r_label}", fontsize=8)
        title = title or f"Concepts of {self.layer}: {keep} of {len(self.fit.components)} components most correlated with the logit"
        path = save_figure(fig, path, title, dpi=dpi)
        record = {
            "layer": self.layer,
            "split": self.split,
            "images": self.image_count,
            "seed": self.seed,
            "components": len(self.fit.components),
            "explained_variance": self.fit.explained_variance,
            "explained_variance_ratio": self.fit.explained_variance_ratio.tolist(),
            "r_all_components": self.fit.r.tolist(),
            "concepts": [
                {**row, **{pole: {"ids": self.example_ids[c][k], "scores": self.example_scores[c, k].tolist()}
                           for k, pole in enumerate(("positive", "negative"))}}
                for c, row in enumerate(self.summary())
            ],
            "sign_convention": "each component is oriented so r >= 0: positive scores go with higher logits (Stretchy)",
        }
        return {"png": path, "json": atomic_write_json(path.with_suffix(".json"), record)}


def layer_activations(model, images: np.ndarray, batch_size: int = 64, progress: bool = False) -> tuple[str, np.ndarray, np.ndarray]:
    """The concept layer's name, its activations (N × C × H × W) and the logits of uint8 images (N × H × W × 3)."""
    import torch
    from tqdm import tqdm

    from two4two.models.inputs import image_batch

    name, layer = concept_layer(model)
    model.eval()
    device = next(model.parameters()).device
    acts, logits = [], []
    with torch.no_grad():
        for start in tqdm(range(0, len(images), batch_size), desc=f"activations of {name}", unit="batch", disable=not progress):
            x = image_batch(images[start : start + batch_size], device)
            acts.append(layer(x).double().cpu().numpy())
            logits.append(model(x).double().cpu().numpy().reshape(-1))
    return name, np.concatenate(acts), np.concatenate(logits)


class Concepts:
    """Explainer: concepts of `model` from `images` randomly drawn images of a split, with example images."""

    def __init__(self, model, images: int = 500, components: int = 10, keep: int = 5, examples: int = 5, progress: bool = False):
        concept_layer(model)  # a clear error before anything is loaded
        if not 1 <= examples <= images:
            raise Two4TwoError(f"examples: {examples} must be between 1 and images ({images})")
        self.model, self.images, self.components, self.keep, self.examples = model, images, components, keep, examples
        self.progress = progress

    def explain(self, split, seed: int = 0) -> ConceptExplanation:
        params = split.params
        if not 3 <= self.images <= len(params):
            raise Two4TwoError(f"images: {self.images} must be between 3 and the split's {len(params)} images")
        chosen = np.sort(np.random.default_rng(seed).choice(len(params), size=self.images, replace=False))
        pixels = split.images[chosen]
        name, acts, logits = layer_activations(self.model, pixels, progress=self.progress)
        fit = fit_concepts(acts, logits, components=self.components, keep=self.keep)
        maps = fit.score_maps(acts)  # N × k × h × w
        scores = maps.mean(axis=(2, 3))
        signs = (1.0, -1.0)  # the positive pole, then the negative
        scale = {i: float(np.quantile(np.abs(maps[:, i]), 0.99)) for i in fit.kept}  # one brightness scale per concept
        top = {(i, s): np.argsort(-s * scores[:, i], kind="stable")[: self.examples] for i in fit.kept for s in signs}
        shown = [[highlight(pixels[top[i, s]], s * maps[top[i, s], i], scale[i]) for s in signs] for i in fit.kept]
        ids = [[[params[chosen[j]].id for j in top[i, s]] for s in signs] for i in fit.kept]
        shown_scores = [[scores[top[i, s], i] for s in signs] for i in fit.kept]
        return ConceptExplanation(
            fit=fit,
            layer=name,
            split=split.name,
            image_count=self.images,
            seed=seed,
            examples=np.array(shown, dtype=np.uint8),
            example_ids=ids,
            example_scores=np.array(shown_scores),
        )
