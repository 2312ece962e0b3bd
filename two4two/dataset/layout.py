"""Datasets on disk: the layout, the manifest, and reading splits back.

    DIR/manifest.json                 config, seed, render settings, versions, counts, status
    DIR/SPLIT/images/ID.png           sRGB image
    DIR/SPLIT/masks/ID.png            uint8 labels 0–8 (see MASK_LABELS)
    DIR/SPLIT/parameters.jsonl        one line per finished sample, in planned order
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from two4two.animal import BLOCK_NAMES
from two4two.errors import Two4TwoError
from two4two.io import atomic_write_bytes
from two4two.parameters import SceneParameters, iter_jsonl

# 2: the animal of the original Two4Two renderer (rotation axes, centring, block shape, pale
# Filmic look); format 1 rendered a different animal, so the two never mix in one dataset.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MASK_LABELS = ("background", *BLOCK_NAMES)  # a mask pixel's value indexes this


class DatasetError(Two4TwoError):
    """The output directory holds something else, or a dataset is incomplete or damaged."""


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("two4two", "numpy", "scipy", "bpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def fingerprint(identity: dict[str, Any]) -> str:
    """What makes two datasets the same: their config and render settings, not how they were run."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def read_manifest(root: Path) -> dict | None:
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path}: damaged manifest ({exc})") from None


def write_manifest(root: Path, manifest: dict) -> None:
    atomic_write_bytes(Path(root) / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def read_split(root: str | Path, split: str) -> list[SceneParameters]:
    path = Path(root) / split / "parameters.jsonl"
    if not path.exists():
        available = sorted(p.parent.name for p in Path(root).glob("*/parameters.jsonl"))
        raise DatasetError(f"{root}: no split {split!r}; available: {', '.join(available) or 'none'}")
    return list(iter_jsonl(path))


def load_image(root: str | Path, split: str, sample_id: str) -> np.ndarray:
    with Image.open(Path(root) / split / "images" / f"{sample_id}.png") as img:
        return np.asarray(img.convert("RGB"))


def load_mask(root: str | Path, split: str, sample_id: str) -> np.ndarray:
    with Image.open(Path(root) / split / "masks" / f"{sample_id}.png") as img:
        return np.asarray(img)


def load_split_arrays(root: str | Path, split: str, progress: bool = True) -> tuple[np.ndarray, list[SceneParameters]]:
    """All images of a split as one uint8 array (N×H×W×3) and their parameters, in order."""
    from tqdm import tqdm

    params = read_split(root, split)
    if not params:
        raise DatasetError(f"{root}/{split}: empty split")
    first = load_image(root, split, params[0].id)
    images = np.empty((len(params), *first.shape), np.uint8)
    for i, p in enumerate(tqdm(params, desc=f"load {split}", unit="img", disable=not progress, mininterval=1)):
        image = load_image(root, split, p.id)
        if image.shape != first.shape:
            raise DatasetError(f"{root}/{split}: image {p.id} is {image.shape}, others are {first.shape}")
        images[i] = image
    return images, params
