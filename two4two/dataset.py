"""Datasets on disk: the layout, a crash-safe writer with resume, and a PyTorch Dataset.

    DIR/manifest.json                 config, seed, render settings, versions, counts, status
    DIR/SPLIT/images/ID.png           sRGB image
    DIR/SPLIT/masks/ID.png            uint8 labels 0–8 (see MASK_LABELS)
    DIR/SPLIT/parameters.jsonl        one line per finished sample, in planned order

A sample is done only when its line is in parameters.jsonl, and the line is written
only after both PNGs were written to temporary names and renamed into place. Lines are
appended in the planned order, so a resumed run produces the same files as an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from two4two.errors import Two4TwoError
from two4two.io import atomic_write_bytes
from two4two.parameters import SceneParameters, iter_jsonl

# 2: the animal of the original Two4Two renderer (rotation axes, centring, block shape, pale
# Filmic look); format 1 rendered a different animal, so the two never mix in one dataset.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MASK_LABELS = (
    "background",
    "arm_left_top",
    "arm_left_bottom",
    "spine_left",
    "spine_left_center",
    "spine_right_center",
    "spine_right",
    "arm_right_top",
    "arm_right_bottom",
)
PNG_END = b"IEND\xaeB`\x82"


class DatasetError(Two4TwoError):
    """The output directory holds something else, or a dataset is incomplete or damaged."""


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _complete_png(path: Path) -> bool:
    """Cheap check that a PNG was fully written: it exists and ends with the IEND chunk."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-len(PNG_END), os.SEEK_END)
            return fh.read() == PNG_END
    except OSError:
        return False


class SplitWriter:
    """Writes one split's samples; knows which are done and appends lines in planned order."""

    def __init__(self, split_dir: Path, planned: Sequence[SceneParameters]):
        self.dir = split_dir
        self.planned = planned
        self.images = split_dir / "images"
        self.masks = split_dir / "masks"
        self.jsonl = split_dir / "parameters.jsonl"
        self.images.mkdir(parents=True, exist_ok=True)
        self.masks.mkdir(parents=True, exist_ok=True)
        self.next_index = self._recover()
        self._pending: dict[int, SceneParameters] = {}
        self._fh = open(self.jsonl, "a", encoding="utf-8")

    def _recover(self) -> int:
        """Count the done prefix; cut the file at the first line that is torn or lacks its files."""
        if not self.jsonl.exists():
            return 0
        good_bytes = 0
        done = 0
        with open(self.jsonl, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n") or done >= len(self.planned):
                    break
                try:
                    line = json.loads(raw)
                except ValueError:
                    break
                expected = self.planned[done]
                if line != expected.to_dict():
                    raise DatasetError(
                        f"{self.jsonl}: line {done + 1} is sample {line.get('id')!r}, but the plan has "
                        f"{expected.id!r} there; this is not the dataset the config describes"
                    )
                if not (_complete_png(self.images / f"{expected.id}.png") and _complete_png(self.masks / f"{expected.id}.png")):
                    break
                good_bytes += len(raw)
                done += 1
        if good_bytes != self.jsonl.stat().st_size:
            with open(self.jsonl, "r+b") as fh:
                fh.truncate(good_bytes)
        return done

    @property
    def remaining(self) -> list[int]:
        return list(range(self.next_index, len(self.planned)))

    @property
    def complete(self) -> bool:
        return self.next_index >= len(self.planned)

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        p = self.planned[index]
        atomic_write_bytes(self.images / f"{p.id}.png", _png_bytes(image))
        atomic_write_bytes(self.masks / f"{p.id}.png", _png_bytes(mask))
        self._pending[index] = p
        lines = []
        while self.next_index in self._pending:
            lines.append(self._pending.pop(self.next_index).to_json() + "\n")
            self.next_index += 1
        if lines:
            self._fh.write("".join(lines))
            self._fh.flush()

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


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


def prepare_output(root: Path, identity: dict, resume: bool, overwrite: bool) -> dict | None:
    """Check the output directory against the dataset to be written.

    Returns the existing manifest when resuming it. Refuses to touch a directory holding
    a different dataset or unknown files unless `overwrite` is set.
    """
    root = Path(root)
    old = read_manifest(root)
    fp = fingerprint(identity)
    if old is None:
        if root.exists() and any(root.iterdir()) and not overwrite:
            raise DatasetError(f"{root}: exists and is not a two4two dataset; choose another -o or pass --overwrite")
        return None
    if old.get("format") != FORMAT_VERSION and not overwrite:
        raise DatasetError(
            f"{root}: holds a dataset of format {old.get('format')!r}, rendered before two4two drew the original "
            f"Two4Two animal; this version writes format {FORMAT_VERSION} and will not mix the two. "
            "Render into another -o, or pass --overwrite to replace it"
        )
    if old.get("fingerprint") == fp and not overwrite:
        if old.get("status") == "complete" and not resume:
            return old
        if not resume:
            raise DatasetError(f"{root}: holds an unfinished render of this config; pass --resume to finish it")
        return old
    if not overwrite:
        raise DatasetError(
            f"{root}: holds a different dataset ({old.get('name')!r}, fingerprint {old.get('fingerprint')}); "
            "pass --overwrite to replace it or choose another -o"
        )
    for split in old.get("splits", {}):
        if (root / split).is_dir() and split and "/" not in split:
            shutil.rmtree(root / split)
    (root / MANIFEST).unlink()
    return None


@dataclass
class RenderJob:
    """Planned splits (name → parameters), what they mean, where they go and how to render them."""

    root: Path
    splits: dict[str, list[SceneParameters]]
    split_info: dict[str, dict]
    identity: dict
    name: str
    settings: Any  # RenderSettings, also recorded in `identity`


def run_render_job(
    job: RenderJob,
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    backend: str = "local",
    **pool_options,
) -> dict:
    """Render every missing sample of every split through one pool; returns the manifest.

    `backend` ("local" or "ray", with `address=` for a cluster) is not part of the
    dataset's identity: a render started on one backend resumes on the other.
    """
    from two4two.render import check_backend, validate_all

    check_backend(backend, pool_options.get("address"))
    for split, params in job.splits.items():
        try:
            validate_all(params)
        except Two4TwoError as exc:
            raise Two4TwoError(f"split {split}: {exc}") from None
    existing = prepare_output(job.root, job.identity, resume, overwrite)
    if existing is not None and existing.get("status") == "complete":
        print(f"{job.root}: already complete ({sum(existing['counts'].values())} samples); nothing to do")
        return existing
    job.root.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT_VERSION,
        "name": job.name,
        "fingerprint": fingerprint(job.identity),
        **job.identity,
        "versions": package_versions(),
        # Splits added later (add_intervention_splits) stay recorded when a render resumes.
        "splits": {**(existing or {}).get("splits", {}), **job.split_info},
        "counts": {**(existing or {}).get("counts", {}), **{s: 0 for s in job.splits}},
        "status": "incomplete",
    }
    write_manifest(job.root, manifest)

    writers = render_splits(job.root, job.splits, job.settings, workers, progress, job.name, manifest, backend, **pool_options)
    manifest["counts"].update({s: w.next_index for s, w in writers.items()})
    manifest["status"] = "complete" if all(w.complete for w in writers.values()) else "incomplete"
    write_manifest(job.root, manifest)
    return manifest


def render_splits(
    root: Path,
    splits: dict[str, list[SceneParameters]],
    settings,
    workers: int | None = None,
    progress: bool = True,
    name: str = "",
    manifest: dict | None = None,
    backend: str = "local",
    **pool_options,
) -> dict[str, "SplitWriter"]:
    """Render what is missing of each split into root/SPLIT through one pool of `backend`."""
    from tqdm import tqdm

    from two4two.render import open_pool

    writers = {s: SplitWriter(root / s, params) for s, params in splits.items()}
    # One flat work list over all splits keeps the pool busy across split boundaries.
    flat: list[SceneParameters] = []
    owner: list[tuple[str, int]] = []
    for s, w in writers.items():
        for i in w.remaining:
            flat.append(splits[s][i])
            owner.append((s, i))
    try:
        if flat:
            with open_pool(backend, workers, settings, **pool_options) as pool, tqdm(
                total=len(flat), unit="img", disable=not progress, smoothing=0.05, desc=f"render {name}".strip()
            ) as bar:
                for result in pool.imap(flat):
                    split, index = owner[result.index]
                    writers[split].write(index, result.image, result.mask)
                    bar.update(1)
                if manifest is not None:
                    manifest["worker_rss_mb"] = {str(k): round(v, 1) for k, v in pool.worker_rss_mb.items()}
    finally:
        for w in writers.values():
            w.close()
    return writers


def add_intervention_splits(
    root: str | Path, split: str, attributes: Sequence[str], workers: int | None = None, progress: bool = True,
    backend: str = "local", **pool_options,
) -> list[str]:
    """Render the missing `split`_intervened_`attribute` splits of an existing dataset.

    Interventions are drawn by the dataset's own config (`DatasetConfig.sample_intervention`:
    its sampler, its seed rule), exactly as if the config had listed them, and rendered
    with its render settings through the chosen backend.
    """
    from two4two.config import INTERVENTION_SEPARATOR, parse_config
    from two4two.render import RenderSettings, check_backend
    from two4two.sampling import SceneBatch

    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None or "config" not in manifest:
        raise DatasetError(f"{root}: not a dataset rendered from a config; cannot draw interventions for it")
    config = parse_config(manifest["config"], f"{root}/{MANIFEST}")
    if manifest.get("splits", {}).get(split, {}).get("intervention_of"):
        raise DatasetError(f"{split}: is itself an intervention split")
    if split not in config.splits:
        raise DatasetError(f"{root}: no split {split!r} in its config; it has {', '.join(config.splits)}")
    originals = read_split(root, split)
    batch = SceneBatch.from_params(originals)
    wanted = {f"{split}{INTERVENTION_SEPARATOR}{a}": a for a in attributes}
    missing = {name: config.sample_intervention(split, attribute, batch).to_list()
               for name, attribute in wanted.items() if manifest["counts"].get(name) != len(originals)}
    if missing:
        check_backend(backend, pool_options.get("address"))
        settings = RenderSettings(**manifest["render_settings"])
        writers = render_splits(root, missing, settings, workers, progress, f"interventions of {split}", None, backend, **pool_options)
        for name, w in writers.items():
            manifest["splits"][name] = {"n": len(originals), "intervention_of": split, "attribute": wanted[name]}
            manifest["counts"][name] = w.next_index
        write_manifest(root, manifest)
    return list(wanted)


def ensure(
    source,
    interventions: dict[str, Sequence[str]] | None = None,
    output_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    backend: str = "local",
    **pool_options,
) -> Path:
    """Render whatever a later stage needs and is missing; return the dataset's root.

    `source` is a dataset config (a DatasetConfig or its YAML path), rendered into
    `output_dir` (default: the config's), or a rendered dataset directory. Unfinished
    splits are completed (as `render --resume` would), then each split's listed
    `interventions` ({split: [attribute, ...]}) that are not there yet are drawn by the
    config's own seed rule and rendered. The library's stages (training, importance,
    explanations, study export) only read finished data; the CLI calls this first.
    """
    from two4two.config import DatasetConfig, load_config

    if isinstance(source, DatasetConfig) or Path(source).suffix in (".yaml", ".yml"):
        config = source if isinstance(source, DatasetConfig) else load_config(source)
        job = plan_config(config, Path(output_dir) if output_dir else None)
        run_render_job(job, workers, resume=True, progress=progress, backend=backend, **pool_options)  # refuses another config's data
        root = job.root
    else:
        root = Path(source)
        manifest = read_manifest(root)
        if manifest is None:
            raise DatasetError(f"{root}: not a rendered dataset (no {MANIFEST}); render its config first")
        if manifest.get("status") != "complete":
            raise DatasetError(f"{root}: incomplete; finish it with two4two render CONFIG --resume")
    for split, attributes in (interventions or {}).items():
        if attributes:
            add_intervention_splits(root, split, attributes, workers, progress, backend, **pool_options)
    return root


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


def plan_config(config, output_dir: Path | None = None) -> RenderJob:
    """Every split of a config, with its intervention splits, as parameters to render."""
    settings = config.render_settings()
    splits: dict[str, list[SceneParameters]] = {}
    info: dict[str, dict] = {}
    for name, split in config.splits.items():
        originals = config.sample_split(name)
        splits[name] = originals.to_list()
        info[name] = {"n": split.n, "intervention_of": None}
        for attribute, inter_name in zip(split.interventions, split.intervention_split_names()):
            splits[inter_name] = config.sample_intervention(name, attribute, originals).to_list() if split.n else []
            info[inter_name] = {"n": split.n, "intervention_of": name, "attribute": attribute}
    identity = {
        "config": config.raw,
        "seed": config.seed,
        "render_settings": settings.to_dict(),
        "format": FORMAT_VERSION,
    }
    return RenderJob(Path(output_dir or config.output_dir), splits, info, identity, config.name, settings)


def plan_params_file(path: Path, output_dir: Path, split: str | None = None, settings=None) -> RenderJob:
    """Render exactly the parameters of a JSON Lines file, as one split."""
    from two4two.render import RenderSettings

    settings = settings or RenderSettings()
    params = list(iter_jsonl(path))
    split = split or "params"
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    identity = {
        "params_file_sha256": digest,
        "render_settings": settings.to_dict(),
        "format": FORMAT_VERSION,
    }
    info = {split: {"n": len(params), "intervention_of": None, "source": str(path)}}
    return RenderJob(Path(output_dir), {split: params}, info, identity, Path(path).stem, settings)


# ---- reading -------------------------------------------------------------------


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


def mask_palette() -> np.ndarray:
    """A distinct colour per mask label (background black) for viewing masks."""
    import matplotlib

    colours = matplotlib.colormaps["tab10"](np.arange(len(MASK_LABELS) - 1))[:, :3]
    return (np.vstack([[0, 0, 0], colours]) * 255).astype(np.uint8)


def write_overview(root: str | Path, split: str, path: str | Path | None = None, count: int = 8) -> Path:
    """A PNG grid: the first `count` images of a split, their masks below (colour-coded)."""
    params = read_split(root, split)[:count]
    if not params:
        raise DatasetError(f"{root}/{split}: no samples to show")
    images = [load_image(root, split, p.id) for p in params]
    masks = [mask_palette()[load_mask(root, split, p.id)] for p in params]
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    grid = np.full((2 * h + 3, len(params) * (w + 3) - 3, 3), 255, np.uint8)
    for k, (img, mask) in enumerate(zip(images, masks)):
        x = k * (w + 3)
        grid[: img.shape[0], x : x + img.shape[1]] = img
        grid[h + 3 : h + 3 + mask.shape[0], x : x + mask.shape[1]] = mask
    path = Path(path) if path else Path(root) / f"overview_{split}.png"
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)
    return path


class Two4TwoDataset:
    """PyTorch Dataset over one split (torch is imported lazily: rendering needs none).

    Each item is a dict: `image` (float C×H×W in [0, 1]), `label` (the stored label, with
    label noise if the sample has labeling_error), `true_label`, `mask` (long H×W) when
    `with_mask`, `targets` (float tensor of the chosen `attributes`) and `id`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        attributes: Sequence[str] = (),
        with_mask: bool = True,
        label_noise: bool = True,
        transform=None,
    ):
        from two4two.parameters import BOOLEAN_ATTRIBUTES, CONTINUOUS_RANGES

        self.root = Path(root)
        self.split = split
        self.params = read_split(root, split)
        allowed = (*CONTINUOUS_RANGES, *BOOLEAN_ATTRIBUTES)
        for a in attributes:
            if a not in allowed:
                raise DatasetError(f"attributes: {a!r} is not a numeric attribute; allowed: {', '.join(allowed)}")
        self.attributes = tuple(attributes)
        self.with_mask = with_mask
        self.label_noise = label_noise
        self.transform = transform

    def __len__(self) -> int:
        return len(self.params)

    def targets(self) -> np.ndarray:
        """All samples' chosen attributes as an array (n, len(attributes))."""
        return np.array([[float(getattr(p, a)) for a in self.attributes] for p in self.params], dtype=np.float32)

    def __getitem__(self, i: int) -> dict:
        import torch

        p = self.params[i]
        image = torch.from_numpy(load_image(self.root, self.split, p.id).copy()).permute(2, 0, 1).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        item = {
            "image": image,
            "label": p.label if self.label_noise else p.true_label,
            "true_label": p.true_label,
            "targets": torch.tensor([float(getattr(p, a)) for a in self.attributes], dtype=torch.float32),
            "id": p.id,
        }
        if self.with_mask:
            item["mask"] = torch.from_numpy(load_mask(self.root, self.split, p.id).astype(np.int64))
        return item
