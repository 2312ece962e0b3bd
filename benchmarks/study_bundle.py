"""The study bundle of the CPU-trained INN on study2022 at 64 px (configs/study-cpu.yaml).

    python benchmarks/study_bundle.py

Needs models/inn_cpu_study2022_64px and data/study2022_64px with its test interventions
(benchmarks/inn.py makes both). Prints the time the export takes, the answer key with its
evidence, and the kept concepts' correlation with the logit (the paper: r in [0.21, 0.34]).
The bundle goes to benchmarks/results/study_bundle/; the baseline grid also to
docs/study_baseline.png for the documentation (the counterfactual and concept stimuli are the
figures benchmarks/inn.py and benchmarks/concepts.py put in docs/).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from PIL import Image

from two4two.study.pipeline import export_bundle, load_config

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "study_bundle"


def main() -> None:
    config = load_config(ROOT / "configs" / "study-cpu.yaml")
    for path in (config.model, config.data):
        if not (ROOT / path).exists():
            sys.exit(f"{path}: missing; run benchmarks/inn.py first")
    config.model, config.data = str(ROOT / config.model), str(ROOT / config.data)
    t0 = time.perf_counter()
    manifest_path = export_bundle(config, OUT, overwrite=True, progress=False).root / "manifest.json"
    seconds = time.perf_counter() - t0
    manifest = json.loads(manifest_path.read_text())
    key = json.loads((OUT / "answer_key.json").read_text())
    print(f"study bundle of {Path(config.model).name}: {manifest_path} ({seconds:.0f} s, importance included)")
    print(f"answer key: relevant when the lower 95 % bound of {key['rule']['measure']} > {key['threshold']:.4f} "
          f"(largest upper bound of {', '.join(key['rule']['reference'])} + {key['rule']['margin']})")
    for question, answer in key["answers"].items():
        evidence = ", ".join(f"{e['attribute']} {e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]" for e in key["evidence"][question])
        print(f"  {question:<17} {answer:<11} {evidence}")
    for condition in manifest["conditions"]:
        print(f"  {condition['name']:<15} {condition['stimulus']['images_shown']} images")
    concepts = json.loads((OUT / "stimuli" / "concepts.json").read_text())["concepts"]
    print("concepts' r with the logit: " + ", ".join(f"{c['r']:.3f}" for c in concepts) + " (paper: 0.21 … 0.34)")
    docs = ROOT / "docs" / "study_baseline.png"
    image = Image.open(OUT / "stimuli" / "baseline.png").convert("RGB")
    image.resize((image.width * 2 // 3, image.height * 2 // 3), Image.LANCZOS).quantize(256).save(docs, optimize=True)
    print(f"docs figure: {docs} ({docs.stat().st_size / 1000:.0f} KB)")


if __name__ == "__main__":
    main()
