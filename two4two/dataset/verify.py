"""`two4two verify DIR`: every file of a dataset checked against what its lines record.

Each sample's line in parameters.jsonl records the SHA-256 of its image and mask, so a
file that was truncated, overwritten or flipped by a bad disk is found by hashing it.
Files are hashed by a thread pool (hashlib and file reads release the GIL). Datasets
written before checksums existed still verify: their files are checked to exist and to
be complete PNGs, and the report says they have no checksums.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from two4two.dataset.writer import PNG_END
from two4two.layout import MANIFEST, PARAMETERS, DatasetError, has_split, read_manifest, sha256_hex
from two4two.locks import LOCK_NAME
from two4two.parameters import CHECKSUMS_KEY

KINDS = ("images", "masks")
CHECKSUM_OF = {"images": "image", "masks": "mask"}


@dataclass
class VerifyReport:
    """What `verify` found: damaged and unexpected files by path, and problems of the lines."""

    root: Path
    files: int = 0  # files checked
    seconds: float = 0.0
    missing: list[Path] = field(default_factory=list)
    corrupt: list[Path] = field(default_factory=list)
    unexpected: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # lines: duplicates, torn lines, counts
    without_checksums: int = 0  # samples written before checksums existed
    damaged: dict[str, set[str]] = field(default_factory=dict)  # split → ids of samples with a missing or corrupt file

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.unexpected or self.problems)

    def summary(self) -> str:
        rate = self.files / self.seconds if self.seconds else float("inf")
        head = (f"{self.root}: {self.files} files checked in {self.seconds:.1f} s ({rate:.0f} files/s): "
                f"{len(self.missing)} missing, {len(self.corrupt)} corrupt, {len(self.unexpected)} unexpected, "
                f"{len(self.problems)} problems with {PARAMETERS}")
        if self.without_checksums:
            head += (f"; {self.without_checksums} samples have no checksums (written before two4two recorded them): "
                     "their files were only checked to be complete PNGs")
        return head

    def format(self, limit: int = 50) -> str:
        lines = [self.summary()]
        for label, paths in (("missing", self.missing), ("corrupt", self.corrupt), ("unexpected", self.unexpected)):
            lines += [f"  {label}: {p}" for p in paths[:limit]]
            if len(paths) > limit:
                lines.append(f"  … and {len(paths) - limit} more {label}")
        lines += [f"  problem: {p}" for p in self.problems[:limit]]
        return "\n".join(lines)


def _split_lines(split_dir: Path, report: VerifyReport) -> list[dict]:
    """The lines of a split's parameters.jsonl that name a sample; torn lines and duplicates are problems."""
    jsonl = split_dir / PARAMETERS
    lines, seen = [], set()
    try:
        raw_lines = jsonl.read_bytes().split(b"\n")
    except OSError as exc:
        report.problems.append(f"{jsonl}: cannot read ({exc.strerror or exc})")
        return []
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for number, raw in enumerate(raw_lines, 1):
        try:
            line = json.loads(raw)
            sample_id = line["id"]
        except (ValueError, KeyError, TypeError):
            report.problems.append(f"{jsonl}:{number}: not a sample's line")
            continue
        if sample_id in seen:
            report.problems.append(f"{jsonl}:{number}: sample {sample_id!r} appears a second time")
            continue
        seen.add(sample_id)
        lines.append(line)
    return lines


def _check_file(path: Path, expected: str | None) -> str | None:
    """None when the file is sound, else "missing" or "corrupt"."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "corrupt"
    if expected is not None:
        return None if sha256_hex(data) == expected else "corrupt"
    return None if data.endswith(PNG_END) else "corrupt"


def verify(root: str | Path, workers: int | None = None, progress: bool = True) -> VerifyReport:
    """Check every file of the dataset at `root`; nothing is changed."""
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None:
        raise DatasetError(f"{root}: not a rendered dataset (no {MANIFEST})")
    t0 = time.perf_counter()
    report = VerifyReport(root)
    splits = manifest.get("splits", {})
    checks: list[tuple[str, str, Path, str | None]] = []  # split, id, path, expected checksum
    for split in splits:
        split_dir = root / split
        counted = manifest.get("counts", {}).get(split)
        if not has_split(root, split):
            if counted:
                report.problems.append(f"{split_dir / PARAMETERS}: missing, but the manifest counts {counted} samples")
            continue
        lines = _split_lines(split_dir, report)
        if manifest.get("status") == "complete" and counted is not None and counted != len(lines):
            report.problems.append(f"{split_dir / PARAMETERS}: {len(lines)} samples, the manifest counts {counted}")
        known = {kind: set() for kind in KINDS}
        for line in lines:
            sums = line.get(CHECKSUMS_KEY) if isinstance(line.get(CHECKSUMS_KEY), dict) else None
            report.without_checksums += sums is None
            for kind in KINDS:
                name = f"{line['id']}.png"
                known[kind].add(name)
                checks.append((split, line["id"], split_dir / kind / name, sums.get(CHECKSUM_OF[kind]) if sums else None))
        for entry in sorted(split_dir.iterdir()):
            if entry.name in KINDS and entry.is_dir():
                report.unexpected += [p for p in sorted(entry.iterdir()) if p.name not in known[entry.name]]
            elif entry.name != PARAMETERS:
                report.unexpected.append(entry)
    allowed_top = {MANIFEST, LOCK_NAME, *splits}
    report.unexpected += [p for p in sorted(root.iterdir())
                          if p.name not in allowed_top and not (p.name.startswith("overview_") and p.suffix == ".png")]
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(checks), unit="file", desc=f"verify {root.name}",
                                                    disable=not progress, mininterval=0.5) as bar:
        for (split, sample_id, path, _), verdict in zip(checks, pool.map(lambda c: _check_file(c[2], c[3]), checks, chunksize=64)):
            bar.update(1)
            if verdict is not None:
                (report.missing if verdict == "missing" else report.corrupt).append(path)
                report.damaged.setdefault(split, set()).add(sample_id)
    report.files = len(checks)
    report.seconds = time.perf_counter() - t0
    return report
