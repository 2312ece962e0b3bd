"""Concept explanations of the small CNN and the INN trained on study2022 at 64 px.

    python benchmarks/concepts.py [--data DIR] [--cnn CKPT] [--inn CKPT] [--split test] [--images 500]

Uses the dataset and checkpoints that benchmarks/importance.py and benchmarks/inn.py
render and train (defaults: data/study2022_64px, models/small_cnn_study2022_64px,
models/inn_cpu_study2022_64px); it trains nothing itself. Prints, per model, the five
concepts' correlation with the logit (the paper: r in [0.21, 0.34]), their p-values,
the explained variance of the factorisation and the time taken. Figures and JSON go to
benchmarks/results/concepts/; the INN's figure (the model the paper explained with
concepts) also to docs/concepts_inn.png for the documentation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image

from two4two.explain.concepts import Concepts
from two4two.models.training import load_classifier
from two4two.split import Split

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "concepts"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "study2022_64px")
    parser.add_argument("--cnn", type=Path, default=ROOT / "models" / "small_cnn_study2022_64px")
    parser.add_argument("--inn", type=Path, default=ROOT / "models" / "inn_cpu_study2022_64px")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path, how in ((args.data, "benchmarks/importance.py"), (args.cnn, "benchmarks/importance.py"), (args.inn, "benchmarks/inn.py")):
        if not path.exists():
            sys.exit(f"{path}: missing; run {how} first (or pass its location)")

    OUT.mkdir(parents=True, exist_ok=True)
    for name, checkpoint in (("small_cnn", args.cnn), ("inn", args.inn)):
        t0 = time.perf_counter()
        explanation = Concepts(load_classifier(checkpoint), images=args.images).explain(Split(args.data, args.split), seed=args.seed)
        seconds = time.perf_counter() - t0
        explanation.save(OUT / f"concepts_{name}_{args.split}.png")
        r = [row["r"] for row in explanation.summary()]
        print(f"\n{name} ({checkpoint}), {args.images} images of {args.data.name}/{args.split}, {seconds:.1f} s:")
        print(explanation.format_table())
        print(f"kept concepts' r: {min(r):.2f} … {max(r):.2f} (paper: 0.21 … 0.34)")
        if name == "inn" and args.split == "test" and args.images == 500 and args.seed == 0:
            png = explanation.save(ROOT / "docs" / "concepts_inn.png", dpi=80)["png"]
            Image.open(png).convert("RGB").quantize(256).save(png, optimize=True)  # small enough for the documentation
            png.with_suffix(".json").unlink()
            print(f"docs figure: {png} ({png.stat().st_size / 1000:.0f} KB)")
    print(f"\noutputs: {OUT}")


if __name__ == "__main__":
    main()
