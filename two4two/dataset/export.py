"""A rendered dataset in the formats researchers' loaders read: Parquet (Hugging Face `datasets`,
pyarrow, pandas) and WebDataset tar shards.

    OUT/SPLIT-00000.parquet   one row per sample: id, split, image and mask ({bytes, path}: `datasets`
                              reads them as images), label, true_label, every scene parameter
                              (original_id and changed_attributes link an intervention to its
                              original, hidden_blocks names a removal's parts), image_sha256, mask_sha256
    OUT/SPLIT-00000.tar       per sample ID.png, ID.mask.png and ID.json (the same fields): WebDataset
                              groups files by the name before the first dot, so the mask is `.mask.png`
    OUT/README.md             (Parquet) a dataset card whose `configs` name each split's files, so
                              `datasets.load_dataset(OUT)` keeps every split apart (by file names
                              alone it would fold test_intervened_* into test)
    OUT/export.json           the source's manifest, the format, and per split its files, counts and
                              each file's SHA-256, written last: a folder without it is not an export

Streamed a sample at a time (memory stays that of one shard's row group or tar member). Every PNG
is checked against the SHA-256 its dataset recorded and copied byte for byte, so a damaged dataset
is refused, not exported. Each shard is written under a temporary name and renamed when whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterator

from two4two.errors import Two4TwoError
from two4two.io import atomic_write, atomic_write_json, atomic_write_text
from two4two.layout import (
    DatasetError,
    parameters_path,
    read_checked_bytes,
    read_manifest,
    split_names,
)
from two4two.parameters import CHECKSUMS_KEY, SEQUENCE_FIELDS, SceneParameters

FORMATS = ("parquet", "webdataset")
EXPORT_MANIFEST = "export.json"
ROW_GROUP = 256  # Parquet rows buffered before a row group is written
# Columns that are not float64 (every other scene parameter is a number in [low, high])
_COLUMN_TYPES = {"id": "string", "split": "string", "obj_name": "string", "colormap": "string", "original_id": "string",
                 "image_sha256": "string", "mask_sha256": "string", "fliplr": "bool", "labeling_error": "bool",
                 "label": "int64", "true_label": "int64"}


def _samples(root: Path, split: str) -> Iterator[dict[str, Any]]:
    """Each sample of a split: its parameter line's fields, labels, checksums and both PNGs' bytes."""
    with open(parameters_path(root, split), encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            raw = json.loads(line)
            checksums = raw.pop(CHECKSUMS_KEY, None)
            if not checksums:
                raise DatasetError(f"{parameters_path(root, split)}:{lineno}: no recorded checksums; "
                                   "export needs a dataset written with them (render it again)")
            params = SceneParameters.from_dict(raw)
            fields = params.to_dict()
            fields.setdefault("hidden_blocks", [])
            yield {"id": params.id, "split": split, "label": params.label, "true_label": params.true_label,
                   **{k: v for k, v in fields.items() if k != "id"},
                   "image_sha256": checksums["image"], "mask_sha256": checksums["mask"],
                   "image": read_checked_bytes(root / split / "images" / f"{params.id}.png", checksums["image"], root),
                   "mask": read_checked_bytes(root / split / "masks" / f"{params.id}.png", checksums["mask"], root)}


def _arrow_schema(sample: dict[str, Any]):
    """The Parquet schema, with the Hugging Face features in its metadata so `load_dataset("parquet")`
    decodes image and mask as images and keeps every other column's type."""
    import pyarrow as pa

    columns, features = [], {}
    for key in sample:
        if key in ("image", "mask"):
            columns.append((key, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
            features[key] = {"_type": "Image"}
        elif key in SEQUENCE_FIELDS:
            item = "int64" if key == "resolution" else "string"
            columns.append((key, pa.list_(pa.int64() if item == "int64" else pa.string())))
            features[key] = {"feature": {"dtype": item, "_type": "Value"}, "_type": "List"}
        else:
            dtype = _COLUMN_TYPES.get(key, "float64")
            columns.append((key, {"string": pa.string(), "bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64()}[dtype]))
            features[key] = {"dtype": dtype, "_type": "Value"}
    return pa.schema(columns, metadata={"huggingface": json.dumps({"info": {"features": features}})})


def _parquet_row(sample: dict[str, Any]) -> dict[str, Any]:
    return {**sample, "image": {"bytes": sample["image"], "path": f"{sample['id']}.png"},
            "mask": {"bytes": sample["mask"], "path": f"{sample['id']}.mask.png"}}


def _write_parquet(path: Path, samples: Iterator[dict[str, Any]], first: dict[str, Any]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema, count = _arrow_schema(first), 0

    def write(fh) -> None:
        nonlocal count
        with pq.ParquetWriter(fh, schema) as writer:
            rows: list[dict[str, Any]] = []
            for sample in samples:
                rows.append(_parquet_row(sample))
                if len(rows) == ROW_GROUP:
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                    count, rows = count + len(rows), []
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                count += len(rows)

    atomic_write(path, write)
    return count


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # no clock in the bytes: the same dataset, the same shard
    tar.addfile(info, io.BytesIO(data))


def _write_tar(path: Path, samples: Iterator[dict[str, Any]], first: dict[str, Any]) -> int:
    count = 0

    def write(fh) -> None:
        nonlocal count
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for sample in samples:
                fields = {k: v for k, v in sample.items() if k not in ("image", "mask")}
                _tar_member(tar, f"{sample['id']}.png", sample["image"])
                _tar_member(tar, f"{sample['id']}.mask.png", sample["mask"])
                _tar_member(tar, f"{sample['id']}.json", json.dumps(fields, allow_nan=False).encode("utf-8"))
                count += 1

    atomic_write(path, write)
    return count


WRITERS: dict[str, tuple[str, Callable]] = {"parquet": ("parquet", _write_parquet), "webdataset": ("tar", _write_tar)}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_dataset(root: str | Path, out: str | Path, fmt: str, splits: list[str] | None = None,
                   shard_size: int = 1000, progress: bool = True) -> Path:
    """Write the dataset at `root` (every split, or `splits`) to `out` in `fmt`; returns export.json's path."""
    import itertools

    from tqdm import tqdm

    if fmt not in FORMATS:
        raise Two4TwoError(f"format: {fmt!r} is not an export format; allowed: {', '.join(FORMATS)}")
    if shard_size < 1:
        raise Two4TwoError(f"shard_size: {shard_size}; allowed: a whole number ≥ 1")
    root, out = Path(root), Path(out)
    manifest = read_manifest(root)
    if manifest is None:
        raise DatasetError(f"{root}: not a two4two dataset (no manifest.json)")
    if manifest.get("status") != "complete":
        raise DatasetError(f"{root}: status {manifest.get('status')!r}; export a complete dataset "
                           "(finish it with `two4two render CONFIG -o DIR --resume`)")
    available = split_names(root)
    chosen = splits or available
    missing = [s for s in chosen if s not in available]
    if missing:
        raise DatasetError(f"{root}: no split {missing[0]!r}; available: {', '.join(available)}")
    if out.exists() and any(out.iterdir()):
        raise Two4TwoError(f"{out}: not empty; export into a new or empty directory")
    suffix, write = WRITERS[fmt]
    record: dict[str, Any] = {"format": fmt, "source": str(root), "source_manifest": manifest, "splits": {}}
    for split in chosen:
        with open(parameters_path(root, split), encoding="utf-8") as fh:
            total = sum(1 for line in fh if line.strip())
        samples = iter(tqdm(_samples(root, split), total=total, desc=f"export {split}", unit="sample", disable=not progress))
        files, count = [], 0
        for index in itertools.count():
            shard = itertools.islice(samples, shard_size)
            first = next(shard, None)
            if first is None:
                break
            path = out / f"{split}-{index:05d}.{suffix}"
            written = write(path, itertools.chain([first], shard), first)
            files.append({"file": path.name, "samples": written, "sha256": _sha256_file(path)})
            count += written
        record["splits"][split] = {"samples": count, "files": files}
    if fmt == "parquet":
        atomic_write_text(out / "README.md", dataset_card(manifest, record["splits"]))
    return atomic_write_json(out / EXPORT_MANIFEST, record)


def dataset_card(manifest: dict[str, Any], splits: dict[str, dict]) -> str:
    """A Hugging Face dataset card: its YAML `configs` map each split to its own Parquet files."""
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        lines += [f"  - split: {split}", f"    path: {split}-*.parquet"]
    counts = ", ".join(f"{split} {done['samples']}" for split, done in splits.items())
    return "\n".join([*lines, "---", "", f"# {manifest.get('name', 'two4two dataset')}", "",
                      f"Exported by two4two from a dataset of format {manifest.get('format')} ({counts} samples).",
                      "Each row holds the image, its mask (block labels 0–8, 0 the background), the label, every scene",
                      "parameter and the SHA-256 of both PNGs. `datasets.load_dataset(\"DIR\")` reads every split.", ""])
