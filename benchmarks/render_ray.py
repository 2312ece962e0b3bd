"""Local pool vs Ray backend on this machine: images/s and per-actor memory.

    python benchmarks/render_ray.py [--n 160] [--resolution 64] [--workers 2] [--batch-size 4]

Both backends render the same study2022 parameters with the default render settings and
one single-threaded worker (actor) per core. Prints, per backend, start-up time until the
first image, steady images/s after it, each worker's resident memory (RSS) after the run,
and whether the two backends' images are identical. Ray runs a local instance here; on a
cluster the same code scales with the number of actors.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from two4two.render import RenderSettings, open_pool
from samplers import resolve_sampler


def run(backend: str, params, workers: int, settings: RenderSettings, **options) -> tuple[float, float, dict, dict]:
    """(start-up s until the first image, steady images/s, worker RSS MB, index → image)."""
    images = {}
    t0 = time.perf_counter()
    first = None
    with open_pool(backend, workers, settings, threads=1, **options) as pool:
        for result in pool.imap(params):
            images[result.index] = result.image
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        rss = dict(pool.worker_rss_mb)
    return first - t0, (len(params) - 1) / (end - first), rss, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=160, help="images per backend")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="workers / actors, one thread each")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per Ray task")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-user instance
    settings = RenderSettings()
    params = resolve_sampler("study2022")(resolution=(args.resolution,) * 2).sample(args.n, 7).to_list()
    print(f"{args.n} images of {args.resolution} x {args.resolution}, settings {settings.to_dict()}, "
          f"{args.workers} workers x 1 thread; load average before: {os.getloadavg()[0]:.2f}")
    results = {}
    for backend, options in (("local", {}), ("ray", {"batch_size": args.batch_size})):
        startup, rate, rss, images = run(backend, params, args.workers, settings, **options)
        results[backend] = images
        memory = ", ".join(f"{v:.0f}" for v in rss.values())
        print(f"  {backend:<6} {rate:6.2f} images/s ({1000 / rate:5.0f} ms/image; start-up {startup:4.1f} s); "
              f"RSS per worker: {memory} MB")
    same = all(np.array_equal(results["local"][i], results["ray"][i]) for i in range(args.n))
    print(f"  images identical across backends: {same}; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
