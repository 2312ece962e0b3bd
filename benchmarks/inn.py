"""The invertible classifier on study2022 at 64 px: accuracy, bits/dim, time, counterfactuals, importance.

    python benchmarks/inn.py [--config configs/inn-cpu.yaml] [--resamples B]

Renders configs/study2022_64px.yaml if missing and trains the INN if no checkpoint of
this exact config exists (both reused otherwise), then prints test accuracy against the
true class, test bits per dimension, the training wall time, the counterfactual grid's
fidelity and the ground-truth importance table. The grid goes to
docs/inn_counterfactuals.png (shown in the documentation); everything else to
benchmarks/results/inn/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from importance import ROOT, print_timings, render, timed, train  # noqa: E402  (the sibling benchmark's stages)

from two4two.dataset import load_split_arrays  # noqa: E402
from two4two.explain.counterfactual import Counterfactuals  # noqa: E402
from two4two.importance import Importance  # noqa: E402
from two4two.models.training import load_classifier, predict_logits, training_split_of  # noqa: E402
from two4two.split import Split  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "inn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/inn-cpu.yaml")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    timings: dict[str, float] = {}

    study = timed("render study2022_64px", lambda: render(ROOT / "configs/study2022_64px.yaml"), timings)
    checkpoint_path = timed("train (or reuse) the INN", lambda: train(ROOT / args.config, None), timings)
    model = load_classifier(checkpoint_path)
    history = json.loads((checkpoint_path.parent / "history.json").read_text())
    parameters = sum(p.numel() for p in model.parameters())

    images, params = load_split_arrays(study, "test", progress=False)
    labels = np.array([p.true_label for p in params], bool)
    logits = predict_logits(model, images)
    accuracy = float(((logits > 0) == labels).mean())
    bits = model.bits_per_dim(images)

    grid = Counterfactuals(model, rows=10).explain(Split(study, "test"), seed=0)
    OUT.mkdir(parents=True, exist_ok=True)
    grid.save(OUT / "inn_counterfactuals.png")
    docs_png = grid.save(ROOT / "docs" / "inn_counterfactuals.png", dpi=90)["png"]
    Image.open(docs_png).convert("RGB").quantize(256).save(docs_png, optimize=True)  # ~150 KB for the documentation
    docs_png.with_suffix(".json").unlink()
    fidelity = np.abs(grid.achieved_logits - grid.targets[None])

    result = timed(
        "importance",
        lambda: Importance(
            model, n_resamples=args.resamples, model_name="INN trained on study2022",
            training_params=training_split_of(checkpoint_path),
        ).evaluate(Split(study, "test")),
        timings,
    )
    result.write(OUT, "importance")

    print()
    print(f"INN {args.config}: {parameters / 1e6:.2f} M parameters, {len(history)} epochs")
    print(f"  training wall time        {sum(h['seconds'] for h in history) / 60:8.1f} min "
          f"({torch.get_num_threads()} threads, best epoch {max(history, key=lambda h: h['val_accuracy'])['epoch']})")
    print(f"  test accuracy (true class) {accuracy:8.3f}  ({len(params)} images)")
    print(f"  test bits per dimension    {bits:8.3f}")
    print(f"  grid column logits         {', '.join(f'{t:+.2f}' for t in grid.targets)}")
    print(f"  |logit of saved 8-bit counterfactual − target|: median {np.median(fidelity):.3f}, max {fidelity.max():.3f}")
    print(f"  grid: {docs_png}")
    print()
    print(result.format_table())
    print_timings(timings, OUT)


if __name__ == "__main__":
    main()
