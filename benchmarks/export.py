"""Export a rendered dataset to Parquet and to WebDataset: size on disk against the folder, samples
and files per second, the exporting process's peak memory, and both read back by their libraries.

    python benchmarks/export.py [--data data/study2022_64px] [--work /tmp/export_bench]

Render the data first (`two4two render study2022_64px`). Each export runs in a process of its own,
so its peak resident memory (VmHWM) is the export's and nothing else's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve, so a child started by a big parent
# would report the parent's size; VmHWM belongs to the child's own address space.
EXPORT = """
import json, sys, time
from two4two.dataset.export import export_dataset
start = time.perf_counter()
export_dataset(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": int(hwm.split()[1]) / 1024}))
"""


def disk_usage(root: Path) -> tuple[int, int, int]:
    """(files, bytes of content, bytes of disk blocks) under root."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files), sum(p.stat().st_blocks * 512 for p in files)


def read_back(out: Path, fmt: str, splits: list[str]) -> tuple[int, float]:
    """Samples read by the format's own library, and the seconds it took (images decoded)."""
    start = time.perf_counter()
    if fmt == "parquet":
        import datasets

        files = {s: sorted(str(p) for p in out.glob(f"{s}-*.parquet")) for s in splits}
        loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(out.parent / "hf_cache"))
        count = 0
        for split in splits:
            for row in loaded[split]:
                row["image"].load()
                count += 1
    else:
        import io

        import webdataset as wds
        from PIL import Image

        count = 0
        for sample in wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False):
            Image.open(io.BytesIO(sample["png"])).load()
            count += 1
    return count, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/study2022_64px")
    parser.add_argument("--work", default="/tmp/export_bench")
    args = parser.parse_args()
    data, work = Path(args.data), Path(args.work)
    if not (data / "manifest.json").exists():
        sys.exit(f"{data}: not rendered; run `two4two render study2022_64px` first")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    manifest = json.loads((data / "manifest.json").read_text())
    samples = sum(manifest["counts"].values())
    files, content, blocks = disk_usage(data)
    print(f"source {data}: {samples} samples in {len(manifest['counts'])} splits, {files} files, "
          f"{content / 2**20:.1f} MiB content, {blocks / 2**20:.1f} MiB on disk")
    print("| format | files | MiB on disk (vs folder) | export s | samples/s | source files/s | peak RSS MiB | read back (samples, s) |")
    print("|---|---|---|---|---|---|---|---|")
    for fmt in ("parquet", "webdataset"):
        out = work / fmt
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", EXPORT, str(data), str(out), fmt], check=True, capture_output=True, text=True, env=env)
        run = json.loads(done.stdout.strip().splitlines()[-1])
        n_files, _, n_blocks = disk_usage(out)
        read, read_seconds = read_back(out, fmt, list(manifest["counts"]))
        assert read == samples, (fmt, read, samples)
        print(f"| {fmt} | {n_files} | {n_blocks / 2**20:.1f} ({n_blocks / blocks:.0%}) | {run['seconds']:.1f} | "
              f"{samples / run['seconds']:.0f} | {files / run['seconds']:.0f} | {run['peak_rss_mb']:.0f} | {read}, {read_seconds:.1f} |")


if __name__ == "__main__":
    main()
