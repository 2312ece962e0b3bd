"""Ground-truth importance of a small CNN trained on study2022 at 64 px, with baselines.

    python benchmarks/importance.py [--epochs N] [--resamples B]

Stages (each timed; finished renders and trainings are reused, so a rerun is cheap):
  1. render configs/study2022_64px.yaml (20 000 train, 1 000 validation, 500 test
     originals with all 10 intervention splits) and configs/unbiased_64px.yaml;
  2. train the small CNN on each (configs/small_cnn_*_64px.yaml);
  3. measure importance on the study2022 test interventions for the study model, a
     random-init model of the same architecture, and the model trained without bias.
Tables, CSV, Markdown and figures go to benchmarks/results/importance/.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from two4two.config import load_config
from two4two.dataset import plan_config, read_manifest, run_render_job
from two4two.importance import Importance
from two4two.models.training import (
    checkpoint_written_for,
    load_classifier,
    load_train_config,
    random_init_like,
    train_model,
    training_split_of,
)
from two4two.split import Split

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "importance"


def timed(label: str, fn, timings: dict):
    t0 = time.perf_counter()
    result = fn()
    timings[label] = time.perf_counter() - t0
    print(f"[{label}: {timings[label]:.0f} s]")
    return result


def print_timings(timings: dict, out: Path) -> None:
    print("wall time per stage:")
    for label, seconds in timings.items():
        print(f"  {label:<34} {seconds:8.0f} s")
    print(f"outputs: {out}")


def render(config_path: Path) -> Path:
    config = load_config(config_path)
    job = plan_config(config, ROOT / config.output_dir)
    run_render_job(job, resume=True)
    return job.root


def train(config_path: Path, epochs: int | None) -> Path:
    config = load_train_config(config_path)
    config.data = ROOT / config.data
    config.output_dir = ROOT / config.output_dir
    if epochs is not None:
        config.training = dataclasses.replace(config.training, epochs=epochs)
    checkpoint = config.output_dir / "model.pt"
    if checkpoint.exists() and checkpoint_written_for(checkpoint, config):
        print(f"{checkpoint}: already trained with this config; reusing it")
        return checkpoint
    return train_model(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="override the configs' epochs")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    timings: dict[str, float] = {}

    study = timed("render study2022_64px", lambda: render(ROOT / "configs/study2022_64px.yaml"), timings)
    timed("render unbiased_64px", lambda: render(ROOT / "configs/unbiased_64px.yaml"), timings)
    counts = read_manifest(study)["counts"]
    print(f"study2022_64px: {sum(counts.values())} images ({counts})")

    study_ckpt = timed("train on study2022_64px", lambda: train(ROOT / "configs/small_cnn_study2022_64px.yaml", args.epochs), timings)
    unbiased_ckpt = timed("train on unbiased_64px", lambda: train(ROOT / "configs/small_cnn_unbiased_64px.yaml", args.epochs), timings)

    torch.manual_seed(0)
    models = [
        ("small CNN trained on study2022", load_classifier(study_ckpt), "study_model", study_ckpt),
        ("random-init small CNN (baseline)", random_init_like(study_ckpt), "random_init", study_ckpt),
        ("small CNN trained on unbiased data (baseline)", load_classifier(unbiased_ckpt), "unbiased_model", unbiased_ckpt),
    ]
    for name, model, stem, ckpt in models:
        # The data-bias column describes each model's own training data.
        result = timed(
            f"importance: {stem}",
            lambda: Importance(
                model, n_resamples=args.resamples, model_name=name, training_params=training_split_of(ckpt)
            ).evaluate(Split(study, "test")),
            timings,
        )
        print()
        print(result.format_table())
        result.write(OUT, stem)
        print()
    print_timings(timings, OUT)


if __name__ == "__main__":
    main()
