"""Parameter sets per second for the study2022 sampler.

    python benchmarks/sampling.py [--n 200000] [--repeats 3]

Prints the throughput of (a) drawing a validated columnar batch, (b) the same plus
building SceneParameters objects, (c) the same plus writing JSON Lines, and for
comparison (d) a per-sample loop with one scipy call per attribute per sample, the
way the original generator samples.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

from two4two.parameters import SceneParameters, write_jsonl
from samplers import resolve_sampler
from two4two.sampling import truncnorm


def best_rate(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / min(times)


def per_sample_loop(n: int, seed: int) -> list[SceneParameters]:
    """One scipy call per attribute per sample, rejection by redrawing one value at a time."""
    rng = np.random.default_rng(seed)
    beta = stats.beta(0.3, 0.3)
    dists = {
        "bg_color": stats.uniform(0.05, 0.9),
        "bending": truncnorm(0, np.pi / 20, -np.pi / 10, np.pi / 10),
        "obj_rotation_roll": truncnorm(0, 0.03 * np.pi / 4, -np.pi / 4, np.pi / 4),
        "obj_rotation_pitch": truncnorm(0, np.pi / 8, -np.pi / 6, np.pi / 6),
        "obj_rotation_yaw": stats.uniform(0, 2 * np.pi),
        "position_x": stats.uniform(-0.8, 0.8),
        "position_y": stats.uniform(-0.8, 0.8),
    }
    out = []
    for i in range(n):
        stretchy = stats.bernoulli(0.5).rvs(random_state=rng) == 1
        arm = stats.uniform(0.48, 0.52).rvs(random_state=rng) if stretchy else stats.uniform(0, 0.52).rvs(random_state=rng)
        shape = beta.rvs(random_state=rng)
        while (arm < 0.45 and shape > 0.5) or (arm > 0.55 and shape < 0.5):
            shape = beta.rvs(random_state=rng)
        if stats.uniform().rvs(random_state=rng) < 0.33:
            shape = beta.rvs(random_state=rng)
        width = float(np.clip(0.25 + 2.5 * ((arm - 0.5) if stretchy else (0.5 - arm)), 0, 1))
        offset = stats.uniform(0, width).rvs(random_state=rng) if width > 0 else 0.0
        color = 1 - offset if stretchy else offset
        if stats.uniform().rvs(random_state=rng) < 0.15:
            color = stats.uniform().rvs(random_state=rng)
        values = {k: float(d.rvs(random_state=rng)) for k, d in dists.items()}
        out.append(
            SceneParameters(
                id=str(i),
                obj_name="stretchy" if stretchy else "peaky",
                arm_position=float(arm),
                obj_color=float(color),
                spherical=float(shape),
                colormap_upper_scale=0.9,
                **values,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-n", type=int, default=2_000, help="samples for the per-sample loop")
    args = parser.parse_args()

    sampler = resolve_sampler("study2022")()
    sampler.sample(1000, 0)  # warm caches (scipy, imports)
    n = args.n
    batch_rate = best_rate(lambda: sampler.sample(n, 1), n, args.repeats)
    object_rate = best_rate(lambda: sampler.sample(n, 1).to_list(), n, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.jsonl"
        jsonl_rate = best_rate(lambda: write_jsonl(path, sampler.sample(n, 1)), n, args.repeats)
    loop_rate = best_rate(lambda: per_sample_loop(args.loop_n, 1), args.loop_n, 1)

    print(f"study2022 sampler, {n} parameter sets, best of {args.repeats}:")
    print(f"  columnar batch (validated)          {batch_rate:>12,.0f} /s")
    print(f"  + SceneParameters objects           {object_rate:>12,.0f} /s")
    print(f"  + written as JSON Lines              {jsonl_rate:>12,.0f} /s")
    print(f"  per-sample scipy loop ({args.loop_n} sets)    {loop_rate:>12,.0f} /s")
    print(f"  speed-up of objects over the loop    {object_rate / loop_rate:>12,.0f} x")


if __name__ == "__main__":
    main()
