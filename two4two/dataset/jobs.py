"""Render jobs: plan a config's splits, render what is missing through one pool, add interventions.

`ensure` is what the CLI calls before a stage that reads data: it renders whatever of a
dataset (and of the intervention splits asked for) is missing, locally or on Ray. Every
job holds the dataset's lock while it writes (two4two.locks), so a second writer is
refused instead of interleaving its lines with the first's; `repair=True` re-renders the
samples whose files `verify` finds missing or damaged, byte-identical to the originals.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from two4two.animal import PARTS
from two4two.layout import (
    FORMAT_VERSION,
    MANIFEST,
    DatasetError,
    check_format,
    fingerprint,
    intervention_split,
    package_versions,
    read_manifest,
    read_split,
    read_split_checksums,
    removal_split,
    sha256_hex,
    write_manifest,
)
from two4two.dataset.verify import verify
from two4two.dataset.writer import SplitWriter, png_bytes, prepare_output
from two4two.errors import Two4TwoError
from two4two.io import atomic_write_bytes, is_interrupted_write
from two4two.locks import LOCK_NAME, exclusive
from two4two.parameters import SceneParameters, iter_jsonl
from two4two.render import RenderSettings, check_backend, open_pool, validate_all


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
    repair: bool = False,
    **pool_options,
) -> dict:
    """Render every missing sample of every split through one pool; returns the manifest.

    `backend` ("local" or "ray", with `address=` for a cluster) is not part of the
    dataset's identity: a render started on one backend resumes on the other. `repair`
    (with `resume`) first re-renders the finished samples whose files are missing or damaged.
    """
    check_backend(backend, pool_options.get("address"))
    if repair and not resume:
        raise DatasetError("--repair: only with --resume (it mends a dataset of the same config)")
    for split, params in job.splits.items():
        try:
            validate_all(params)
        except Two4TwoError as exc:
            raise Two4TwoError(f"split {split}: {exc}") from None
    if read_manifest(job.root) is None and job.root.exists() and any(p.name != LOCK_NAME for p in job.root.iterdir()) and not overwrite:
        prepare_output(job.root, job.identity, resume, overwrite)  # refuses, before a lock file is left in a foreign directory
    with exclusive(job.root, "dataset"):
        existing = prepare_output(job.root, job.identity, resume, overwrite)
        if repair and existing is not None:
            repair_damaged(job, workers, progress, backend, **pool_options)
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

        writers = render_splits(job.root, job.splits, job.settings, workers, progress, job.name, manifest, backend,
                                **pool_options)
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
    writers = {s: SplitWriter(root / s, params) for s, params in splits.items()}
    # One flat work list over all splits keeps the pool busy across split boundaries.
    owner = [(s, i) for s, w in writers.items() for i in w.remaining]
    flat = [splits[s][i] for s, i in owner]
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


def repair_damaged(job: RenderJob, workers=None, progress: bool = True, backend: str = "local", **pool_options) -> int:
    """Re-render the samples whose recorded files `verify` finds missing or damaged; returns how many.

    A re-rendered file must hash to the checksum its line records (rendering is
    deterministic), so a repair never changes what a dataset holds; leftover temporary
    files of an interrupted write are removed. Other unexpected files are only reported.
    """
    report = verify(job.root, progress=progress)
    for path in report.unexpected:
        if is_interrupted_write(path) and path.parent.name in ("images", "masks"):
            path.unlink(missing_ok=True)
    # A sample's line is its parameters (interventions added later too).
    todo = [(split, p) for split, ids in report.damaged.items() for p in read_split(job.root, split) if p.id in ids]
    if not todo:
        print(f"{job.root}: no damaged samples to repair")
        return 0
    sums = {split: read_split_checksums(job.root, split) for split in report.damaged}
    with open_pool(backend, workers, job.settings, **pool_options) as pool, tqdm(
        total=len(todo), unit="img", disable=not progress, desc=f"repair {job.name}".strip()
    ) as bar:
        for result in pool.imap([p for _, p in todo]):
            split, p = todo[result.index]
            files = {"image": (job.root / split / "images" / f"{p.id}.png", png_bytes(result.image)),
                     "mask": (job.root / split / "masks" / f"{p.id}.png", png_bytes(result.mask))}
            recorded = sums[split].get(p.id, {})
            for kind, (path, data) in files.items():
                if kind in recorded and sha256_hex(data) != recorded[kind]:
                    raise DatasetError(
                        f"{path}: re-rendered, it differs from the original (the renderer or its versions changed since "
                        "the dataset was written; see versions in manifest.json); not replaced")
                atomic_write_bytes(path, data)
            bar.update(1)
    print(f"{job.root}: repaired {len(todo)} samples ({sum(len(v) for v in report.damaged.values())} damaged)")
    return len(todo)


def add_intervention_splits(
    root: str | Path, split: str, attributes: Sequence[str], workers: int | None = None, progress: bool = True,
    backend: str = "local", **pool_options,
) -> list[str]:
    """Render the missing `split`_intervened_`attribute` splits of an existing dataset.

    Interventions are drawn by the dataset's own config (`DatasetConfig.sample_intervention`:
    its sampler, its seed rule), exactly as if the config had listed them, and rendered
    with its render settings through the chosen backend.
    """
    from two4two.config import parse_config
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
    entries = {intervention_split(split, a): {"n": len(originals), "intervention_of": split, "attribute": a}
               for a in attributes}
    return _add_derived(root, manifest, entries,
                        lambda e: config.sample_intervention(split, e["attribute"], batch).to_list(),
                        f"interventions of {split}", workers, progress, backend, pool_options)


def _add_derived(root: Path, manifest: dict, entries: dict[str, dict], derive: Callable[[dict], list[SceneParameters]],
                 desc: str, workers, progress, backend, pool_options) -> list[str]:
    """Render those of the derived splits `entries` ({name: its manifest entry}) that the dataset at `root`
    lacks, each of `derive(entry)`, as its other splits were rendered; returns every name of `entries`."""
    missing = {name: derive(e) for name, e in entries.items() if manifest["counts"].get(name) != e["n"]}
    if missing:
        check_backend(backend, pool_options.get("address"))
        check_format(root, manifest)  # new splits must be rendered as the old ones were
        settings = RenderSettings(**manifest["render_settings"])
        with exclusive(root, "dataset"):
            manifest = read_manifest(root)  # as the lock's holder left it
            writers = render_splits(root, missing, settings, workers, progress, desc, None, backend, **pool_options)
            for name, w in writers.items():
                manifest["splits"][name] = entries[name]
                manifest["counts"][name] = w.next_index
            write_manifest(root, manifest)
    return list(entries)


def removal_params(originals: Sequence[SceneParameters], group: str) -> list[SceneParameters]:
    """The originals with part `group` hidden (a group or a block of two4two.animal.PARTS):
    everything else identical, so the re-rendered image differs only where the part was or shaded."""
    if group not in PARTS:
        raise DatasetError(f"{group!r} is not a block group or block; allowed: {', '.join(PARTS)}")
    hidden = PARTS[group]
    return [p.replace(id=f"{p.id}-no-{group}", original_id=p.id, hidden_blocks=tuple(dict.fromkeys((*p.hidden_blocks, *hidden))))
            for p in originals]


def add_removal_splits(
    root: str | Path, split: str, groups: Sequence[str], workers: int | None = None, progress: bool = True,
    backend: str = "local", **pool_options,
) -> list[str]:
    """Render the missing `split`_removed_`group` splits: each original of `split` again without
    that block group (part removal, the ground truth of "the model without this part")."""
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None or split not in manifest.get("splits", {}):
        raise DatasetError(f"{root}: no rendered split {split!r} to remove parts from")
    info = manifest["splits"][split]
    if info.get("intervention_of") or info.get("removal_of"):
        raise DatasetError(f"{split}: is itself a derived split; remove parts from an original split")
    originals = read_split(root, split)
    entries = {removal_split(split, g): {"n": len(originals), "intervention_of": None, "removal_of": split, "group": g}
               for g in groups}
    return _add_derived(root, manifest, entries, lambda e: removal_params(originals, e["group"]),
                        f"part removals of {split}", workers, progress, backend, pool_options)


def ensure(
    source,
    interventions: dict[str, Sequence[str]] | None = None,
    removals: dict[str, Sequence[str]] | None = None,
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
    config's own seed rule and rendered, and so are its listed part `removals` ({split: [group, ...]}). The library's stages (training, importance,
    explanations, study bundle) only read finished data; the CLI calls this first.
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
    for add, wanted in ((add_intervention_splits, interventions), (add_removal_splits, removals)):
        for split, names in (wanted or {}).items():
            if names:
                add(root, split, names, workers, progress, backend, **pool_options)
    return root


def plan_config(config, output_dir: Path | None = None) -> RenderJob:
    """Every split of a config, with its intervention splits, as parameters to render."""
    settings = config.render_settings()
    splits: dict[str, list[SceneParameters]] = {}
    info: dict[str, dict] = {}
    for name, split in config.splits.items():
        originals = config.sample_split(name)
        splits[name] = config.remove_parts(name, originals.to_list())
        info[name] = {"n": split.n, "intervention_of": None}
        for attribute, inter_name in zip(split.interventions, split.intervention_split_names()):
            splits[inter_name] = config.remove_parts(name, config.sample_intervention(name, attribute, originals).to_list()) if split.n else []
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
