"""The observer at 64 px: training time, per-attribute test MSE, and the counterfactual audit.

    python benchmarks/observer.py [--images 100] [--steps 11]

Renders configs/unbiased_observer_64px.yaml if missing, trains configs/observer-cpu.yaml
unless a checkpoint of exactly that config exists (reused otherwise), prints the
observer's test MSE per attribute beside the mean predictor's, then audits the INN of
configs/inn-cpu.yaml (trained first if missing) on the study2022_64px test images: the
paper's Table 6. Outputs go to benchmarks/results/audit/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from importance import ROOT, print_timings, render, timed, train  # noqa: E402  (the sibling benchmark's stages)

from two4two.dataset import load_split_arrays, read_split  # noqa: E402
from two4two.explain.audit import CounterfactualAudit  # noqa: E402
from two4two.models.observer import OBSERVED, YAW, scaled_errors  # noqa: E402
from two4two.models.training import load_classifier, load_observer  # noqa: E402
from two4two.parameters import ATTRIBUTES  # noqa: E402
from two4two.split import Split  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "audit"


def mean_predictor_mse(train_params, test_params) -> dict[str, float]:
    """The MSE of always answering the training mean (yaw: the circular mean)."""
    result = {}
    for a in OBSERVED:
        train = np.array([getattr(p, a) for p in train_params], float)
        test = np.array([getattr(p, a) for p in test_params], float)
        constant = np.angle(np.mean(np.exp(1j * train))) if a == YAW else train.mean()
        result[a] = float(np.mean(scaled_errors(a, np.full_like(test, constant), test) ** 2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=11)
    args = parser.parse_args()
    timings: dict[str, float] = {}

    unbiased = timed("render unbiased_observer_64px", lambda: render(ROOT / "configs/unbiased_observer_64px.yaml"), timings)
    study = timed("render study2022_64px", lambda: render(ROOT / "configs/study2022_64px.yaml"), timings)
    observer_ckpt = timed("train (or reuse) the observer", lambda: train(ROOT / "configs/observer-cpu.yaml", None), timings)
    inn_ckpt = timed("train (or reuse) the INN", lambda: train(ROOT / "configs/inn-cpu.yaml", None), timings)
    observer, inn = load_observer(observer_ckpt), load_classifier(inn_ckpt)
    history = json.loads((observer_ckpt.parent / "history.json").read_text())

    images, params = load_split_arrays(unbiased, "test", progress=False)
    record = observer.validation_record(images, params)
    trivial = mean_predictor_mse(read_split(unbiased, "train"), params)
    result = timed(
        "audit",
        lambda: CounterfactualAudit(inn, observer, images=args.images, steps=args.steps).evaluate(Split(study, "test")),
        timings,
    )
    paths = result.write(OUT)

    print()
    print(f"observer configs/observer-cpu.yaml: {len(history)} epochs, "
          f"training wall time {sum(h['seconds'] for h in history) / 60:.1f} min")
    print(f"test MSE on the [0, 1] scale ({len(params)} unbiased test images; label accuracy {record['label_accuracy']:.3f}):")
    print(f"  {'attribute':<16} {'observer':>10} {'mean predictor':>15}")
    for a in OBSERVED:
        print(f"  {ATTRIBUTES[a].label:<16} {record[f'mse_{a}']:>10.5f} {trivial[a]:>15.5f}")
    print()
    print(result.format_table())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    print_timings(timings, OUT)


if __name__ == "__main__":
    main()
