"""`two4two verify` speed: files/s on a rendered dataset (default data/study2022_64px, 26 500 images).

    python benchmarks/verify_speed.py [DATASET] [--workers N ...]

A dataset rendered before checksums existed is verified through a hard-linked copy whose lines
get the SHA-256 of their files (benchmarks/results/verify/), so the figure is that of a full
checksum pass. Each run reads files the page cache may hold; the first (cold) run after a
render is the figure of a dataset read back from disk, so it is printed apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from two4two.layout import MANIFEST, parameters_path, read_manifest
from two4two.dataset.verify import verify

ROOT = Path(__file__).resolve().parents[1]


def checksummed(root: Path) -> Path:
    """`root` itself when its lines hold checksums, else a hard-linked copy whose lines do."""
    manifest = read_manifest(root)
    first_split = next(iter(manifest["splits"]))
    first_line = parameters_path(root, first_split).open().readline()
    if '"sha256"' in first_line:
        return root
    copy = ROOT / "benchmarks" / "results" / "verify" / root.name
    if (copy / MANIFEST).exists():
        return copy
    shutil.rmtree(copy, ignore_errors=True)
    for split in manifest["splits"]:
        out_lines = []
        for raw in parameters_path(root, split).read_text().splitlines():
            line = json.loads(raw)
            sums = {}
            for kind, folder in (("image", "images"), ("mask", "masks")):
                source = root / split / folder / f"{line['id']}.png"
                target = copy / split / folder / source.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(source, target)
                sums[kind] = hashlib.sha256(source.read_bytes()).hexdigest()
            out_lines.append(json.dumps({**line, "sha256": sums}) + "\n")
        parameters_path(copy, split).write_text("".join(out_lines))
    shutil.copy(root / MANIFEST, copy / MANIFEST)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default=str(ROOT / "data" / "study2022_64px"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    root = checksummed(Path(args.dataset))
    print(f"{root}: {os.cpu_count()} cores")
    for workers in args.workers:
        t0 = time.perf_counter()
        report = verify(root, workers=workers, progress=False)
        seconds = time.perf_counter() - t0
        print(f"  {workers} threads: {report.files} files in {seconds:.1f} s = {report.files / seconds:.0f} files/s "
              f"({'ok' if report.ok else report.summary()})")


if __name__ == "__main__":
    main()
