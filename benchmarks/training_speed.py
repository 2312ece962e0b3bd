"""Training throughput of the shipped model configs on this CPU: which torch settings help.

    python benchmarks/training_speed.py [--steps 12] [--configs small_cnn inn observer]

For each model config (the small CNN, the INN, the observer; 64 px) it times optimiser steps
on random uint8 batches converted the way `train_model` converts them, under: the default
(torch's own thread count), channels_last memory format, `torch.compile`, and 1 thread.
Prints images/s per variant (median over the timed steps, after warm-up), so the training
loop uses only what measurably helps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from two4two.models.training import build_model, load_train_config  # noqa: E402

CONFIGS = {
    "small_cnn": ROOT / "configs/small_cnn_study2022_64px.yaml",
    "inn": ROOT / "configs/inn-cpu.yaml",
    "observer": ROOT / "configs/observer-cpu.yaml",
}
VARIANTS = ("default", "channels_last", "compile", "1 thread")


def step_fn(model, channels_last: bool, compiled: bool):
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    bce = torch.nn.BCEWithLogitsLoss()

    def loss_of(x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if hasattr(model, "training_loss"):  # the INN's likelihood + β·BCE, the observer's MSE + BCE
            return model.training_loss(x, targets)[0]
        return bce(model(x), targets)

    loss_fn = torch.compile(loss_of) if compiled else loss_of

    def step(batch: np.ndarray, targets: torch.Tensor) -> None:
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = loss_fn(x, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return step


def measure(name: str, variant: str, steps: int, warmup: int) -> float:
    config = load_train_config(CONFIGS[name])
    torch.manual_seed(0)
    model = build_model(**config.model)
    model.train()
    threads = torch.get_num_threads()
    if variant == "1 thread":
        torch.set_num_threads(1)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    batch_size = config.training.batch_size
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (batch_size, 64, 64, 3), dtype=np.uint8)
    if name == "observer":  # random targets of the observer's output width: speed does not depend on them
        with torch.no_grad():
            width = model.eval()(torch.zeros(2, 3, 64, 64)).shape[1]
        model.train()
        targets = torch.from_numpy(rng.random((batch_size, width)).astype(np.float32))
    else:
        targets = torch.from_numpy((rng.random(batch_size) < 0.5).astype(np.float32))
    step = step_fn(model, variant == "channels_last", variant == "compile")
    times = []
    try:
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            step(batch, targets)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return batch_size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=tuple(CONFIGS), default=tuple(CONFIGS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default; images/s per optimiser step (median)")
    print(f"{'model':<10}" + "".join(f"{v:>15}" for v in args.variants))
    for name in args.configs:
        figures = []
        for variant in args.variants:
            try:
                figures.append(f"{measure(name, variant, args.steps, args.warmup):15.0f}")
            except Exception as exc:  # a variant torch cannot do here is reported, not fatal
                figures.append(f"{'failed':>15}")
                print(f"  {name} {variant}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}", file=sys.stderr)
        print(f"{name:<10}" + "".join(figures), flush=True)


if __name__ == "__main__":
    main()
