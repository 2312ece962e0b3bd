"""ROAD's noisy linear imputation: throughput here against a per-image, per-channel spsolve loop;
and the explorer's slider: response time over loopback, with a screenshot for the documentation.

    python benchmarks/faithfulness.py [--images 500] [--baseline-images 50] [--sizes 64 128] [--moves 200]

For each resolution, the study2022 test images (64 px: data/study2022_64px; 128 px: 500 test
images rendered into data/study2022_128px_test) are ranked by a model-free map (their Sobel
edges, so the removal masks have the structure of a real map), and every image is imputed at
MoRF and LeRF for 10 … 90 % removed: images × percentages per second, for
`two4two.explain.faithfulness.impute` (one factorisation per run of systems, all channels
at once) and for the loop that ROAD's reference code is built around (one sparse system per
image, assembled in a LIL matrix, and solved once per channel with spsolve), the latter on the
first `--baseline-images` images. Both give the same pixels (checked). The model's forward
passes are not timed: they are the same for both.

The slider: `two4two explore` serves the small CNN (configs/small_cnn_study2022_64px.yaml, trained
if missing) on study2022_64px's test split; for 10 images a client opens the image and its
gradient map (not timed), then moves the slider 20 times to fresh percentages, each move being
what the page does: the JSON of /api/perturbed and both perturbed PNGs. p50 and p95 of a move.
With Chromium present (/usr/bin/chromium), docs/explorer.png is a screenshot of that page.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_tables import ROOT, render, train, trained  # noqa: E402

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slider_latency(moves: int, screenshot: Path | None) -> dict:
    config = ROOT / "configs/small_cnn_study2022_64px.yaml"
    model = train(config) if not trained(config) else ROOT / "models/small_cnn_study2022_64px"
    data = render(ROOT / "configs/study2022_64px.yaml")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "two4two.cli", "explore", "--model", str(model), "--data", str(data),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if "explorer of" not in server.stdout.readline():
            raise SystemExit("the explorer did not start")
        get = lambda path: urllib.request.urlopen(url + path).read()  # noqa: E731
        rng = np.random.default_rng(0)
        per_image = max(1, moves // 10)
        times = []
        for i in rng.choice(500, size=10, replace=False):
            get(f"/api/image/{i}")
            get(f"/map/gradient/{i}.png")
            for p in rng.choice(np.arange(1, 100), size=per_image, replace=False):
                t0 = time.perf_counter()
                answer = json.loads(get(f"/api/perturbed/gradient/{i}?p={p}"))
                get(answer["morf"]["url"])
                get(answer["lerf"]["url"])
                times.append(time.perf_counter() - t0)
        if screenshot is not None and Path("/usr/bin/chromium").exists():
            take_screenshot(url, screenshot)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    ms = np.array(times) * 1000
    return {"moves": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max())}


def take_screenshot(url: str, path: Path) -> None:
    """The explorer on a wrongly classified image near the boundary, gradient map, slider at 30 %."""
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    args = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args, headless=True)
        page = browser.new_page(viewport={"width": 1250, "height": 1000})
        page.goto(url + "/")
        page.locator("select[name=correct]").select_option("no")
        page.get_by_role("button", name="filter").click()
        page.get_by_test_id("image-item").first.click()
        page.get_by_test_id("method").select_option("integrated_gradients")
        expect(page.get_by_test_id("curve-morf")).to_have_count(1, timeout=60_000)
        page.get_by_test_id("slider").fill("30")
        expect(page.get_by_test_id("slider")).to_have_attribute("data-shown", "30", timeout=60_000)
        for order in ("morf", "lerf"):
            expect(page.get_by_test_id(f"{order}-image")).to_have_js_property("complete", True)
        page.wait_for_timeout(500)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        browser.close()
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--baseline-images", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 128], choices=(64, 128))
    parser.add_argument("--moves", type=int, default=200, help="slider moves timed (0: skip the explorer)")
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
    if args.moves:
        latency = slider_latency(args.moves, ROOT / "docs" / "explorer.png")
        print(f"\nexplorer slider over loopback, {latency['moves']} moves (JSON + both images each), 64 px, small CNN, "
              f"gradient map: p50 {latency['p50_ms']:.0f} ms, p95 {latency['p95_ms']:.0f} ms, max {latency['max_ms']:.0f} ms")


if __name__ == "__main__":
    main()
