"""Render throughput, quality and memory at 128 × 128 with masks.

    python benchmarks/render.py [--n 200] [--psnr-samples 20] [--memory-renders 2000]

Prints
  1. images/s of the render pool for 1 worker × 2 threads and 2 workers × 1 thread
     (steady state, after start-up; start-up time printed separately), and of the same
     renderer at 128 samples without denoising, with the ratio of the two;
  2. PSNR of the chosen settings against 1024-sample renders of 20 fixed samples, and the
     background noise: std of flat 20 × 20 corner patches minus the 1024-sample render, for
     the chosen settings and for 128 samples without denoising (the original's sample count);
  3. the same throughput for a naive mode that rebuilds the scene for every sample;
  4. each worker's resident memory after 10 renders and after --memory-renders renders.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from two4two.render import RenderPool, RenderSettings, worker_payload
from samplers import resolve_sampler


def study_params(n: int, seed: int):
    return resolve_sampler("study2022")(resolution=(128, 128)).sample(n, seed).to_list()


def pool_throughput(params, workers: int, threads: int, settings: RenderSettings) -> tuple[float, float]:
    """(start-up seconds until the first image, steady images/s after it)."""
    t0 = time.perf_counter()
    first = None
    count = 0
    with RenderPool(workers, settings, threads=threads) as pool:
        for _ in pool.imap(params):
            count += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    return first - t0, (count - 1) / (end - first)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def render_in_process(params, with_masks=False, **scene_kwargs):
    from blender_scripts.scene import AnimalScene

    scene = AnimalScene(**scene_kwargs)
    pairs = [scene.render(worker_payload(p)) for p in params]
    scene.close()
    images = [image for image, _ in pairs]
    return (images, [mask for _, mask in pairs]) if with_masks else images


def naive_throughput(params, settings: RenderSettings) -> tuple[float, list[np.ndarray]]:
    """Rebuild the whole scene (factory reset, objects, materials) for every sample."""
    from blender_scripts.scene import AnimalScene

    images = []
    t0 = time.perf_counter()
    for p in params:
        scene = AnimalScene(resolution=(128, 128), threads=2, **settings.to_dict())
        images.append(scene.render(worker_payload(p))[0])
        scene.close()
    return len(params) / (time.perf_counter() - t0), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images per throughput run")
    parser.add_argument("--psnr-samples", type=int, default=20)
    parser.add_argument("--reference-samples", type=int, default=1024)
    parser.add_argument("--memory-renders", type=int, default=2000)
    parser.add_argument("--sections", default="1,2,3,4", help="which of the four parts to run, e.g. 1,4")
    args = parser.parse_args()
    sections = {int(s) for s in args.sections.split(",")}
    settings = RenderSettings()
    print(f"settings: {settings.to_dict()}, 128 x 128 with masks")

    params = study_params(args.n, 1)
    if 1 in sections:
        throughput(params, settings)
    fixed = study_params(args.psnr_samples, 2022)
    if 2 in sections or 3 in sections:
        chosen = quality(fixed, settings, args.reference_samples)
    if 3 in sections:
        naive(fixed, settings, chosen)
    if 4 in sections:
        memory(settings, args.memory_renders)


def throughput(params, settings: RenderSettings) -> None:
    print("\n1. render pool (study2022 parameters)")
    # Alternate the layouts and settings twice so a transient load on the machine hits all.
    plain = RenderSettings(**{**settings.to_dict(), "samples": 128, "denoise": False})
    rates = {"shipped": [], "plain": []}
    for _ in range(2):
        for workers, threads, name, chosen, n in ((1, 2, "shipped", settings, len(params)),
                                                  (2, 1, "shipped", settings, len(params)),
                                                  (2, 1, "plain", plain, max(len(params) // 4, 20))):
            startup, rate = pool_throughput(params[:n], workers, threads, chosen)
            if workers == 2:
                rates[name].append(rate)
            label = f"{workers} worker{'s' if workers > 1 else ''} x {threads} thread{'s' if threads != 1 else ''}"
            what = "shipped" if name == "shipped" else "128 samples, no denoiser"
            print(f"   {what:<26} {label:<20} {rate:6.2f} images/s  ({1000 / rate:5.0f} ms/image; start-up {startup:4.1f} s)")
    shipped, slow = np.mean(rates["shipped"]), np.mean(rates["plain"])
    print(f"   default pool (2 workers x 1 thread): shipped {shipped:.2f} images/s, 128 samples without denoising "
          f"{slow:.2f} images/s: {shipped / slow:.1f} x faster")


def flat_patch_std(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Std of image − reference over the 20 × 20 corner patches at least 4 px from the animal."""
    values = []
    for y, x in ((2, 2), (2, 106), (106, 2), (106, 106)):
        if not mask[max(0, y - 4):y + 24, max(0, x - 4):x + 24].any():
            values.append((image[y:y + 20, x:x + 20].astype(float) - reference[y:y + 20, x:x + 20]).std())
    return float(np.mean(values)) if values else float("nan")


def quality(fixed, settings: RenderSettings, reference_samples: int) -> list[np.ndarray]:
    print(f"\n2. quality: PSNR against {reference_samples}-sample renders, {len(fixed)} fixed samples")
    t0 = time.perf_counter()
    reference_kwargs = dict(resolution=(128, 128), **{**settings.to_dict(), "samples": reference_samples, "denoise": False})
    references, masks = render_in_process(fixed, with_masks=True, **reference_kwargs)
    ref_time = (time.perf_counter() - t0) / len(fixed)
    chosen = render_in_process(fixed, resolution=(128, 128), **settings.to_dict())
    values = np.array([psnr(a, b) for a, b in zip(chosen, references)])
    print(f"   PSNR mean {values.mean():.2f} dB, min {values.min():.2f} dB, max {values.max():.2f} dB "
          f"(reference: {ref_time:.1f} s/image)")
    at_128 = render_in_process(fixed, resolution=(128, 128), **{**settings.to_dict(), "samples": 128, "denoise": False})
    for name, images in ((f"chosen ({settings.samples} samples, denoised)", chosen),
                         ("128 samples, not denoised", at_128)):
        noise = np.nanmean([flat_patch_std(a, b, m) for a, b, m in zip(images, references, masks)])
        print(f"   background noise, {name:32s} std {noise:.3f} /255 against {reference_samples} samples")
    return chosen


def naive(fixed, settings: RenderSettings, chosen: list[np.ndarray]) -> None:
    print("\n3. naive mode: rebuild the scene for every sample (in-process, 1 process x 2 threads)")
    t0 = time.perf_counter()
    render_in_process(fixed, resolution=(128, 128), threads=2, **settings.to_dict())
    persistent_rate = len(fixed) / (time.perf_counter() - t0)
    print(f"   persistent scene: {persistent_rate:6.2f} images/s ({1000 / persistent_rate:5.0f} ms/image)")
    rate, naive_images = naive_throughput(fixed, settings)
    same = all(np.array_equal(a, b) for a, b in zip(naive_images, chosen))
    print(f"   rebuilt per sample: {rate:6.2f} images/s ({1000 / rate:5.0f} ms/image); "
          f"images identical to the persistent scene: {same}")


def memory(settings: RenderSettings, renders: int) -> None:
    print(f"\n4. memory: default pool over {renders} renders")
    many = study_params(renders, 3)
    with RenderPool(settings=settings) as pool:  # the default: one single-threaded worker per core
        for k, _ in enumerate(pool.imap(many), 1):
            if k == 10:
                start_rss = dict(pool.worker_rss_mb)
        end_rss = dict(pool.worker_rss_mb)
    for pid in end_rss:
        print(f"   worker {pid}: RSS {start_rss.get(pid, float('nan')):.0f} MB after 10 renders, "
              f"{end_rss[pid]:.0f} MB after {renders}")


if __name__ == "__main__":
    main()
