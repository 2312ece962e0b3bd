"""How closely our renders match the original Two4Two renderer's for the same parameters.

The original's renders, with their parameters in our format and their masks in our label
convention, are in tests/data/original-128 (see its README). These measures compare one
of our (image, mask) pairs with one of theirs; benchmarks/fidelity.py prints them for all.
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


@dataclass(frozen=True)
class Reference:
    id: str
    params: dict
    image: np.ndarray  # uint8 H×W×3
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


def _band(silhouette: np.ndarray, width: int) -> np.ndarray:
    return ndimage.binary_dilation(silhouette, structure=np.ones((3, 3), bool), iterations=width)


def compare(image: np.ndarray, mask: np.ndarray, ref_image: np.ndarray, ref_mask: np.ndarray) -> dict:
    """Silhouette IoU, block-label agreement and mean absolute RGB differences (in /255).

    * iou: of the animal silhouettes (label > 0);
    * label_agreement: share of the union of both silhouettes with the same block label;
    * background_mad: over pixels more than EDGE_MARGIN px away from either silhouette;
    * interior_mad: over pixels more than EDGE_MARGIN px inside both silhouettes.
    """
    ours, theirs = mask > 0, ref_mask > 0
    union, inter = ours | theirs, ours & theirs
    diff = np.abs(image.astype(np.float64) - ref_image.astype(np.float64)).mean(axis=-1)
    background = ~_band(union, EDGE_MARGIN)
    interior = ~_band(~inter, EDGE_MARGIN)
    return {
        "iou": float(inter.sum() / max(union.sum(), 1)),
        "label_agreement": float((mask[union] == ref_mask[union]).mean()) if union.any() else 1.0,
        "background_mad": float(diff[background].mean()) if background.any() else float("nan"),
        "interior_mad": float(diff[interior].mean()) if interior.any() else float("nan"),
    }
