"""Datasets on disk: every path and split name, the manifest, and reading splits back.

    DIR/manifest.json                 config, seed, render settings, versions, counts, status
    DIR/SPLIT/images/ID.png           sRGB image
    DIR/SPLIT/masks/ID.png            uint8 labels 0–8 (see MASK_LABELS)
    DIR/SPLIT/parameters.jsonl        one line per finished sample, in planned order, with the
                                      SHA-256 of its two PNGs ("sha256": {"image": …, "mask": …})
    DIR/SPLIT_intervened_ATTRIBUTE/   SPLIT with one attribute redrawn per sample (interventions)
    DIR/SPLIT_removed_PART/           SPLIT re-rendered without a block or block group (part removal)
    DIR/.lock                         held by the process writing the dataset (two4two.locks)

No other module spells these names: it asks this one (`intervention_split`, `parameters_path`, …).
The module sits below the config layer, which checks split names against the separators.

A file that does not match its recorded checksum is damaged: readers say so, naming the file,
`two4two verify DIR` lists every such file, `two4two render CONFIG --resume --repair` re-renders them.
"""

from __future__ import annotations

import hashlib
import io
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
from two4two.parameters import CHECKSUMS_KEY, SceneParameters, iter_jsonl

# 3: the original's 1.5 px Blackman–Harris pixel filter and a denoiser that leaves no dark
# fringes on the blocks' shaded edges. Older formats never mix with it in one dataset; what
# each one was, for the message that refuses it:
FORMAT_VERSION = 3
OLD_FORMATS = {
    1: "rendered before two4two drew the original Two4Two animal",
    2: "rendered with a 1 px box filter and a denoiser that painted dark fringes on the blocks' shaded edges",
}
MANIFEST = "manifest.json"
PARAMETERS = "parameters.jsonl"
INTERVENTION_SEPARATOR = "_intervened_"
REMOVAL_SEPARATOR = "_removed_"
MASK_LABELS = ("background", *BLOCK_NAMES)  # a mask pixel's value indexes this


def intervention_split(split: str, attribute: str) -> str:
    return f"{split}{INTERVENTION_SEPARATOR}{attribute}"


def removal_split(split: str, part: str) -> str:
    return f"{split}{REMOVAL_SEPARATOR}{part}"


def is_derived_split(name: str) -> bool:
    """An intervention or removal split (one a config cannot name itself)."""
    return INTERVENTION_SEPARATOR in name or REMOVAL_SEPARATOR in name


def parameters_path(root: str | Path, split: str) -> Path:
    return Path(root) / split / PARAMETERS


def has_split(root: str | Path, split: str) -> bool:
    """Whether the split has been written (its parameter file exists)."""
    return parameters_path(root, split).exists()


def split_names(root: str | Path) -> list[str]:
    """Every split written under root, sorted."""
    return sorted(p.parent.name for p in Path(root).glob(f"*/{PARAMETERS}"))


def intervened_attributes(root: str | Path, split: str) -> list[str]:
    """The attributes whose intervention split of `split` has been written, sorted."""
    prefix = intervention_split(split, "")
    return [name[len(prefix):] for name in split_names(root) if name.startswith(prefix)]


class DatasetError(Two4TwoError):
    """The output directory holds something else, or a dataset is incomplete or damaged."""


def check_format(root, manifest: dict) -> None:
    """Refuse a dataset of another format with a message that says what it was."""
    found = manifest.get("format")
    if found != FORMAT_VERSION:
        what = OLD_FORMATS.get(found, "written by another version of two4two")
        raise DatasetError(
            f"{root}: holds a dataset of format {found!r}, {what}; this version writes format {FORMAT_VERSION} "
            "and will not mix the two. Render into another -o, or pass --overwrite to replace it")


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
    path = parameters_path(root, split)
    if not path.exists():
        raise DatasetError(f"{root}: no split {split!r}; available: {', '.join(split_names(root)) or 'none'}")
    return list(iter_jsonl(path))


def read_split_checksums(root: str | Path, split: str) -> dict[str, dict[str, str]]:
    """Each sample's recorded PNG checksums ({id: {"image": hex, "mask": hex}}); samples written
    before two4two recorded them are absent."""
    path = parameters_path(root, split)
    out = {}
    with open(path, "rb") as fh:
        for raw in fh:
            if b'"sha256"' not in raw:
                continue
            try:
                line = json.loads(raw)
                out[line["id"]] = line[CHECKSUMS_KEY]
            except (ValueError, KeyError, TypeError):
                continue  # read_split names a bad line; this only collects checksums
    return out


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def repair_hint(root: str | Path) -> str:
    return f"list the damage with `two4two verify {root}` and re-render it with `two4two render CONFIG -o {root} --resume --repair`"


def read_checked_bytes(path: Path, sha256: str | None, root: str | Path) -> bytes:
    """A file of dataset `root`, as stored; a missing or checksum-mismatched file is a DatasetError naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc}); {repair_hint(root)}") from None
    if sha256 is not None and sha256_hex(data) != sha256:
        raise DatasetError(f"{path}: damaged (its SHA-256 is not the one recorded in {PARAMETERS}); {repair_hint(root)}")
    return data


def read_png(path: Path, sha256: str | None, root: str | Path) -> Image.Image:
    """A PNG of dataset `root`, decoded; a missing, corrupt or checksum-mismatched file is a DatasetError naming it."""
    data = read_checked_bytes(path, sha256, root)
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's ways of saying a file is truncated or not a PNG
        raise DatasetError(f"{path}: damaged image ({exc}); {repair_hint(root)}") from None


def load_image(root: str | Path, split: str, sample_id: str, sha256: str | None = None) -> np.ndarray:
    """A sample's image (H×W×3 uint8); `sha256`: check it against the recorded checksum first."""
    return np.asarray(read_png(Path(root) / split / "images" / f"{sample_id}.png", sha256, root).convert("RGB"))


def load_mask(root: str | Path, split: str, sample_id: str, sha256: str | None = None) -> np.ndarray:
    return np.asarray(read_png(Path(root) / split / "masks" / f"{sample_id}.png", sha256, root))


def load_split_arrays(root: str | Path, split: str, progress: bool = True) -> tuple[np.ndarray, list[SceneParameters]]:
    """All images of a split as one uint8 array (N×H×W×3) and their parameters, in order."""
    from tqdm import tqdm

    params = read_split(root, split)
    if not params:
        raise DatasetError(f"{root}/{split}: empty split")
    checksums = read_split_checksums(root, split)
    first = load_image(root, split, params[0].id)
    images = np.empty((len(params), *first.shape), np.uint8)
    for i, p in enumerate(tqdm(params, desc=f"load {split}", unit="img", disable=not progress, mininterval=1)):
        image = load_image(root, split, p.id, checksums.get(p.id, {}).get("image"))
        if image.shape != first.shape:
            raise DatasetError(f"{root}/{split}: image {p.id} is {image.shape}, others are {first.shape}")
        images[i] = image
    return images, params
