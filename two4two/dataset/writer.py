"""The crash-safe split writer and the check of an output directory before writing.

A sample is done only when its line is in parameters.jsonl, and the line is written
only after both PNGs were written to temporary names and renamed into place; it records
their SHA-256, so damage found later is damage (`two4two verify`). A write killed before
its rename leaves a temporary file; reopening the split removes it. Lines are appended in
the planned order, so a resumed run produces the same files as an uninterrupted one. The
caller holds the dataset's lock (two4two.locks): one writer per dataset.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from two4two.layout import MANIFEST, PARAMETERS, DatasetError, check_format, fingerprint, read_manifest, sha256_hex
from two4two.io import atomic_write_bytes, is_interrupted_write, named_errors
from two4two.locks import LOCK_NAME
from two4two.parameters import CHECKSUMS_KEY, SceneParameters

PNG_END = b"IEND\xaeB`\x82"


def png_bytes(array: np.ndarray) -> bytes:
    """An image or mask as the PNG bytes a dataset stores (deterministic: re-rendering a sample gives the same file)."""
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


def remove_interrupted_writes(split_dir: Path) -> None:
    """Delete what writes killed mid-way (kill -9, power loss) left in a split's images/ and masks/.

    The caller holds the dataset's lock, so no write is running: each such file belongs to a
    sample whose line was never written, which the resumed render writes again.
    """
    for folder in (split_dir / "images", split_dir / "masks"):
        for path in folder.iterdir():
            if is_interrupted_write(path):
                path.unlink(missing_ok=True)


class SplitWriter:
    """Writes one split's samples; knows which are done and appends lines in planned order."""

    def __init__(self, split_dir: Path, planned: Sequence[SceneParameters]):
        self.planned = planned
        self.images = split_dir / "images"
        self.masks = split_dir / "masks"
        self.jsonl = split_dir / PARAMETERS
        self.images.mkdir(parents=True, exist_ok=True)
        self.masks.mkdir(parents=True, exist_ok=True)
        remove_interrupted_writes(split_dir)
        self.next_index = self._recover()
        self._pending: dict[int, str] = {}
        with named_errors(self.jsonl):
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
                if isinstance(line, dict):
                    line.pop(CHECKSUMS_KEY, None)
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
        image_png, mask_png = png_bytes(image), png_bytes(mask)
        atomic_write_bytes(self.images / f"{p.id}.png", image_png)
        atomic_write_bytes(self.masks / f"{p.id}.png", mask_png)
        line = {**p.to_dict(), CHECKSUMS_KEY: {"image": sha256_hex(image_png), "mask": sha256_hex(mask_png)}}
        self._pending[index] = json.dumps(line, allow_nan=False) + "\n"
        lines = []
        while self.next_index in self._pending:
            lines.append(self._pending.pop(self.next_index))
            self.next_index += 1
        if lines:
            with named_errors(self.jsonl):
                self._fh.write("".join(lines))
                self._fh.flush()

    def close(self) -> None:
        try:
            with named_errors(self.jsonl):
                self._fh.flush()
                os.fsync(self._fh.fileno())
        finally:
            with contextlib.suppress(OSError):  # the flush above already named the path
                self._fh.close()


def prepare_output(root: Path, identity: dict, resume: bool, overwrite: bool) -> dict | None:
    """Check the output directory against the dataset to be written.

    Returns the existing manifest when resuming it. Refuses to touch a directory holding
    a different dataset or unknown files unless `overwrite` is set.
    """
    root = Path(root)
    old = read_manifest(root)
    if old is None:
        if root.exists() and any(p.name != LOCK_NAME for p in root.iterdir()) and not overwrite:
            raise DatasetError(f"{root}: exists and is not a two4two dataset; choose another -o or pass --overwrite")
        return None
    if not overwrite:
        check_format(root, old)
    if old.get("fingerprint") == fingerprint(identity) and not overwrite:
        if not resume and old.get("status") != "complete":
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
