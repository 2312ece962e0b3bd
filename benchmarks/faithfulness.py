"""ROAD's noisy linear imputation: throughput here against a per-image, per-channel spsolve loop.

    python benchmarks/faithfulness.py [--images 500] [--baseline-images 50] [--sizes 64 128]

For each resolution, the study2022 test images (64 px: data/study2022_64px; 128 px: 500 test
images rendered into data/study2022_128px_test) are ranked by a model-free map (their Sobel
edges, so the removal masks have the structure of a real map), and every image is imputed at
MoRF and LeRF for 10 … 90 % removed: images × percentages per second, for
`two4two.explain.faithfulness.impute` (one factorisation per run of systems, all channels
at once) and for the loop that ROAD's reference code is built around (one sparse system per
image, assembled in a LIL matrix, and solved once per channel with spsolve), the latter on the
first `--baseline-images` images. Both give the same pixels (checked). The model's forward
passes are not timed: they are the same for both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_tables import ROOT, render  # noqa: E402

from two4two.dataset import load_split_arrays  # noqa: E402
from two4two.explain.attribution import sobel_edges  # noqa: E402
from two4two.explain.faithfulness import DEFAULT_PERCENTAGES, NEIGHBOURS, impute, pixel_order, removal_masks  # noqa: E402

CONFIG_128 = """# 500 study2022 test images at 128 px for benchmarks/faithfulness.py
name: study2022_128px_test
sampler: study2022
seed: 2022
resolution: [128, 128]
output_dir: data/study2022_128px_test
splits:
  test: {n: 500}
"""


def per_channel_loop(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """One image the way ROAD's reference imputer is organised: a LIL system, spsolve per channel."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve

    h, w = removed.shape
    flat_removed = removed.ravel()
    ids = np.flatnonzero(flat_removed)
    index = np.zeros(h * w, np.int64)
    index[ids] = np.arange(len(ids))
    rows, cols = np.divmod(ids, w)
    a = lil_matrix((len(ids), len(ids)))
    b = np.zeros((len(ids), image.shape[-1]))
    diag = np.zeros(len(ids))
    pixels = image.reshape(-1, image.shape[-1])
    for dr, dc, weight in NEIGHBOURS:
        rr, cc = rows + dr, cols + dc
        ok = np.flatnonzero((rr >= 0) & (rr < h) & (cc >= 0) & (cc < w))
        neighbour = rr[ok] * w + cc[ok]
        diag[ok] += weight
        known = ~flat_removed[neighbour]
        b[ok[known]] += weight * pixels[neighbour[known]]
        a[ok[~known], index[neighbour[~known]]] = -weight
    a.setdiag(diag)
    a = a.tocsc()
    out = image.copy().reshape(-1, image.shape[-1])
    for c in range(image.shape[-1]):
        out[ids, c] = spsolve(a, b[:, c])
    return out.reshape(image.shape)


def measure(size: int, images: np.ndarray, baseline_images: int) -> dict:
    x = images.astype(np.float64) / 255
    order = pixel_order(sobel_edges(images))
    shape = images.shape[1:3]
    masks = [(p, most, removal_masks(order, shape, p, most)) for p in DEFAULT_PERCENTAGES for most in (True, False)]
    t0 = time.perf_counter()
    ours = [impute(x, m, "linear", noise=0.0) for _, _, m in masks]
    ours_seconds = time.perf_counter() - t0
    k = min(baseline_images, len(images))
    t0 = time.perf_counter()
    loop = [np.stack([per_channel_loop(x[i], m[i]) for i in range(k)]) for _, _, m in masks]
    loop_seconds = time.perf_counter() - t0
    worst = max(float(np.abs(a[:k] - b).max()) for a, b in zip(ours, loop))
    ours_rate = len(images) * len(masks) / ours_seconds
    loop_rate = k * len(masks) / loop_seconds
    return {"size": size, "images": len(images), "removals": len(masks), "ours_per_s": ours_rate, "loop_images": k,
            "loop_per_s": loop_rate, "speedup": ours_rate / loop_rate, "max_difference": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--baseline-images", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], choices=(64, 128))
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        if size == 64:
            root = render(ROOT / "configs/study2022_64px.yaml")
        else:
            config = ROOT / "benchmarks" / "results" / "faithfulness" / "study2022_128px_test.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(CONFIG_128)
            root = render(config)
        images, _ = load_split_arrays(root, "test", progress=False)
        rows.append(measure(size, images[: args.images], args.baseline_images))
        r = rows[-1]
        print(f"{size} px: ours {r['ours_per_s']:.1f} imputations/s on {r['images']} images × {r['removals']} removals; "
              f"per-channel loop {r['loop_per_s']:.1f}/s on {r['loop_images']} images; ×{r['speedup']:.1f}; "
              f"largest difference {r['max_difference']:.1e}")
    print("\n| size | images × removals per s (ours) | per-image, per-channel spsolve | speed-up |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} px | {r['ours_per_s']:.1f} | {r['loop_per_s']:.1f} | ×{r['speedup']:.1f} |")


if __name__ == "__main__":
    main()
