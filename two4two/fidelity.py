"""How closely our renders match the original Two4Two renderer's for the same parameters.

The original's renders, with their parameters in our format and their masks in our label
convention, are in tests/data/original-128 (see its README). These measures compare one
of our (image, mask) pairs with one of theirs; benchmarks/fidelity.py prints them for all.
A figure that leaves a region out (the interior and background MADs skip a 2 px band at the
silhouette) comes with one that covers it: the edge ring and the whole image's outliers.
At 64 px we compare with the reference averaged 2 × 2 (`downsampled`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "original-128"
EDGE_MARGIN = 2  # px kept away from either silhouette when comparing colours
RING_WIDTH = 1  # px either side of a silhouette's edge (4-neighbourhood): the edge ring
OUTLIER = 40.0  # /255: a pixel this much darker or brighter than the reference is an outlier


@dataclass(frozen=True)
class Reference:
    id: str
    params: dict
    image: np.ndarray  # H×W×3, uint8 (float64 once downsampled)
    mask: np.ndarray  # uint8 H×W, labels 0–8


def load_references(directory: Path | str = REFERENCE_DIR) -> list[Reference]:
    directory = Path(directory)
    refs = []
    for line in (directory / "params.jsonl").read_text().splitlines():
        params = json.loads(line)
        image = np.asarray(Image.open(directory / "images" / f"{params['id']}.png").convert("RGB"))
        mask = np.asarray(Image.open(directory / "masks" / f"{params['id']}.png"))
        refs.append(Reference(params["id"], params, image, mask))
    return refs


def downsampled(ref: Reference, factor: int = 2) -> Reference:
    """The reference at 1/factor of its size: colours averaged over factor × factor blocks; a
    block belongs to the animal when at least half its pixels do, and then takes its most
    frequent block label. Its params carry the new resolution."""
    h, w = ref.mask.shape
    if h % factor or w % factor:
        raise ValueError(f"downsampled: {w}×{h} is not divisible by factor {factor}")
    blocks = ref.image.astype(np.float64).reshape(h // factor, factor, w // factor, factor, 3)
    labels = ref.mask.reshape(h // factor, factor, w // factor, factor).transpose(0, 2, 1, 3).reshape(h // factor, w // factor, -1)
    counts = np.stack([(labels == k).sum(-1) for k in range(9)], axis=-1)
    animal = counts[..., 1:].sum(-1) * 2 >= factor * factor
    mask = np.where(animal, 1 + counts[..., 1:].argmax(-1), 0).astype(np.uint8)
    params = {**ref.params, "resolution": [w // factor, h // factor]}
    return Reference(ref.id, params, blocks.mean(axis=(1, 3)), mask)


def compare_with(ref: Reference, image: np.ndarray, mask: np.ndarray) -> dict:
    """compare() against `ref` at the render's size: a smaller render (64 px against the 128 px
    reference) is compared with the reference averaged down to it (`downsampled`)."""
    factor = ref.mask.shape[0] // mask.shape[0]
    target = ref if factor == 1 else downsampled(ref, factor)
    return compare(image, mask, target.image, target.mask)


def _band(silhouette: np.ndarray, width: int) -> np.ndarray:
    return ndimage.binary_dilation(silhouette, structure=np.ones((3, 3), bool), iterations=width)


def edge_ring(*silhouettes: np.ndarray, width: int = RING_WIDTH) -> np.ndarray:
    """Pixels within `width` px of any of the silhouettes' edges, on both sides: a pixel whose
    centre is at most `width` px (4-neighbourhood steps) from a pixel on the other side."""
    cross = ndimage.generate_binary_structure(2, 1)
    ring = np.zeros(silhouettes[0].shape, bool)
    for s in silhouettes:
        ring |= ndimage.binary_dilation(s, cross, iterations=width) & ndimage.binary_dilation(~s, cross, iterations=width)
    return ring


def compare(image: np.ndarray, mask: np.ndarray, ref_image: np.ndarray, ref_mask: np.ndarray) -> dict:
    """Silhouette IoU, block-label agreement, mean absolute RGB differences and outliers (in /255).

    A pixel's difference is the mean over its three channels of ours − the reference.
    * iou: of the animal silhouettes (label > 0);
    * label_agreement: share of the union of both silhouettes with the same block label;
    * background_mad: over pixels more than EDGE_MARGIN px away from either silhouette;
    * interior_mad: over pixels more than EDGE_MARGIN px inside both silhouettes;
    * edge_mad: over the edge ring (within RING_WIDTH px of either silhouette's edge);
    * darker / brighter: pixels of the whole image more than OUTLIER darker / brighter;
    * max_deficit / max_excess: the largest such difference anywhere (0 if none).
    """
    ours, theirs = mask > 0, ref_mask > 0
    union, inter = ours | theirs, ours & theirs
    signed = (image.astype(np.float64) - np.asarray(ref_image, dtype=np.float64)).mean(axis=-1)
    diff = np.abs(signed)
    background = ~_band(union, EDGE_MARGIN)
    interior = ~_band(~inter, EDGE_MARGIN)
    ring = edge_ring(ours, theirs)
    return {
        "iou": float(inter.sum() / max(union.sum(), 1)),
        "label_agreement": float((mask[union] == ref_mask[union]).mean()) if union.any() else 1.0,
        "background_mad": float(diff[background].mean()) if background.any() else float("nan"),
        "interior_mad": float(diff[interior].mean()) if interior.any() else float("nan"),
        "edge_mad": float(diff[ring].mean()) if ring.any() else float("nan"),
        "darker": int((signed < -OUTLIER).sum()),
        "brighter": int((signed > OUTLIER).sum()),
        "max_deficit": float(max(0.0, -signed.min())),
        "max_excess": float(max(0.0, signed.max())),
    }
