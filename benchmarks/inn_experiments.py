"""Every INN configuration tried for issue 31, trained, audited and put in one table.

    python benchmarks/inn_experiments.py [--only NAME ...] [--list]
    python benchmarks/inn_experiments.py --curve NAME


An experiment is a base config with overrides (EXPERIMENTS below): the supervised weight β,
the size of φ, the depth. For each one asked for it trains (an interrupted training resumes,
as `two4two train --resume`), then measures on the study2022_64px test split:
  * test accuracy against the true class and bits per dimension;
  * Table 1/3's flip % of every attribute (the importance module);
  * Table 6: the observer's reading of every attribute along counterfactual interpolations
    over 99 % of the logits (mean max − min), and the share of those readings inside
    [−0.05, 1.05] (a counterfactual outside has stopped being an animal of the data);
  * the counterfactual grid (docs/inn_experiments/NAME.png).
Each finished experiment's figures go to docs/inn_experiments/NAME.json, with the wall time of
every step, and docs/inn_experiments.md is rewritten from all of them: the trainings live in
models/ and do not outlast a session, the records do, so the table grows across sessions.

`--curve NAME` asks whether the counterfactuals grow with training: it trains NAME while keeping
the checkpoint of every epoch (models/inn_experiments/NAME/epochs/), then measures test accuracy
and Table 6 on each, into docs/inn_experiments/NAME.curve.json and a section of the document.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_tables import (  # noqa: E402  (the sibling benchmark's stages)
    PAPER_AUDIT,
    ROOT,
    SHIPPED_OBSERVER,
    Stages,
    accuracy,
    render,
    train,
    trained,
)

from two4two.explain.audit import share_text  # noqa: E402
from two4two.io import atomic_write_json, atomic_write_text  # noqa: E402
from two4two.parameters import ATTRIBUTES  # noqa: E402

RECORDS = ROOT / "docs" / "inn_experiments"
DOC = ROOT / "docs" / "inn_experiments.md"
STUDY = ROOT / "data" / "study2022_64px"
GLOBAL = "configs/inn-cpu-global.yaml"

# name → (base config, overrides of its model and training sections). Same data and seed throughout.
EXPERIMENTS = {
    "global-beta-1e-4": (GLOBAL, {}),  # configs/inn-cpu-global.yaml as shipped
    "global-beta-1e-2": (GLOBAL, {"model": {"beta": 0.01}}),
    "global-beta-1": (GLOBAL, {"model": {"beta": 1.0}}),
    "global-beta-10": (GLOBAL, {"model": {"beta": 10.0}}),
    # is it the training's length? β = 1 (readings stay inside) half as long again, the cosine over 15 epochs
    "global-beta-1-15ep": (GLOBAL, {"model": {"beta": 1.0}, "training": {"epochs": 15}}),
    # φ inside the last level, as the paper's (layer 641 of 687): after 3 of its 6 steps, μ = the other 3
    "global-mu-beta-1": (GLOBAL, {"model": {"beta": 1.0, "classifier_step": 3}}),
    # φ on the 2 × 2 level (192 × 2 × 2: the paper's 768 numbers), the 1 × 1 level behind it
    "phi2x2-beta-1": (GLOBAL, {"model": {"beta": 1.0, "classifier_level": 5}}),
    "phi8-beta-10": ("configs/inn-cpu.yaml", {}),  # the INN shipped before issue 31: φ 48 × 8 × 8
}
# Short trainings that decided the shipped settings (one epoch of 19 200 images = 300 steps, the
# rate peaking at step 90; bits/dim of the training batches). Kept as text: they end in a blow-up.
PILOTS = [
    "scale_map sigmoid_inv, rate 10⁻³ (6 epochs planned): bits/dim 5.4 → 3.7 by step 130, then 4.5·10⁸ "
    "within three steps; stopped as diverged (loss NaN) in epoch 1.",
    "scale_map bounded (the paper's sigmoid(h) + 0.5), rate 10⁻³: blew up at step 70 (bits/dim 4.1 → 3.5·10⁷, "
    "up to 3·10¹¹), came back to 4.7 by step 300 (gradient clipping at 50).",
    "coupling additive, rate 10⁻³: the same at step 75 (up to 4·10¹⁴), back to 5.1 by step 300. So the coupling's "
    "scale is not the cause.",
    "Gradients of the bounded run at 10⁻³, step by step: the total norm is 1.5–3 until the blow-up, then 605 and "
    "13 000 in two steps; the largest is the shift of the very first actnorm (the one applied to the pixels), "
    "321 then 4 810, ahead of the LU convolutions of the 2 × 2 and 4 × 4 levels.",
    "scale_map bounded, rate 2·10⁻⁴: no blow-up; bits/dim 3.45 and BCE 0.61 at step 300. Shipped with "
    "gradient clipping at 5.",
    "global-beta-1e-4, stopped after 5 of its 10 epochs (100 000 images, 1 thread beside other work, 66–79 "
    "images/s) to make room for β = 10⁻²: training bits/dim 4.59, 3.26, 2.94, 2.75, 2.59; training BCE 0.69, "
    "0.65, 0.65, 0.63, 0.62 (a coin: 0.69; the 10 % label noise floor: about 0.33); validation accuracy of the "
    "averaged weights 0.51, 0.53, 0.55, 0.53, 0.54. With the paper's weight the linear head finds almost "
    "nothing of the class in φ after 100 000 images (the paper's flow saw 2.5 million).",
    "β = 10 on the same flow, a 5-epoch pilot (one-cycle over 5 epochs; 72–118 images/s): training BCE 0.73, "
    "0.61, 0.50, 0.43, 0.38 (near the label-noise floor), bits/dim 4.87 → 3.91 (β = 10⁻² reached 2.64 in 10), "
    "validation accuracy of the averaged weights 0.58, 0.69, 0.74, 0.76, 0.79. The average (decay 0.999) still "
    "holds a fifth of the first epoch's weights after 1 565 steps, so it lags the trained head; short runs "
    "want a decay of about 0.99.",
    "global-beta-1-15ep, stopped after 2 of its 15 epochs (30–39 images/s beside global-mu-beta-1 and a "
    "benchmark) because it could not finish and be measured within the session: training bits/dim 5.00, 3.66, "
    "BCE 0.687, 0.648, validation accuracy 0.548, 0.628 (global-mu-beta-1 at the same epochs, on its 10-epoch "
    "schedule: 0.564, 0.652). Two single-threaded trainings side by side ran at 35–41 images/s each, about "
    "what one alone runs at (≈ 90): on this machine they are no faster together than one after the other.",
]
TABLE6 = ("arm_position", "obj_color", "spherical", "bg_color", "bending", "obj_rotation_roll")
PLAUSIBLE_SHARE = 0.95  # of every attribute's readings inside [−0.05, 1.05]


def experiment_config(name: str) -> Path:
    """The experiment's full config, written beside its record (the base with the overrides)."""
    import yaml

    base, overrides = EXPERIMENTS[name]
    raw = yaml.safe_load((ROOT / base).read_text())
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    raw["name"] = f"inn_experiment_{name}"
    raw["output_dir"] = f"models/inn_experiments/{name}"
    path = RECORDS / f"{name}.yaml"
    RECORDS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, f"# {name}: {base} with {json.dumps(overrides) if overrides else 'no overrides'}\n"
                      + yaml.safe_dump(raw, sort_keys=False, default_flow_style=None))
    return path


def run(name: str, observer) -> dict:
    from PIL import Image

    from two4two.layout import read_manifest
    from two4two.explain.audit import CounterfactualAudit
    from two4two.explain.counterfactual import Counterfactuals
    from two4two.importance import Importance
    from two4two.models.training import load_classifier, load_train_config
    from two4two.split import Split

    config_path = experiment_config(name)
    config = load_train_config(config_path)
    stages = Stages(ROOT / "benchmarks" / "results" / "inn_experiments" / name / "timings.json")
    checkpoint = stages.run("train", lambda: train(config_path), reused=trained(config_path))
    history = json.loads((ROOT / config.output_dir / "history.json").read_text())
    inn = load_classifier(checkpoint)
    test = Split(STUDY, "test")
    acc = stages.run("accuracy", lambda: accuracy(inn, STUDY))
    train_acc = stages.run("training accuracy", lambda: accuracy(inn, STUDY, config.training.train_split))
    spread = stages.run("φ's spread", lambda: phi_spread(inn, test.images))
    bits = stages.run("bits per dimension", lambda: inn.bits_per_dim(test.images))
    importance = stages.run("Table 1/3", lambda: Importance(inn, n_resamples=200, model_name=name).evaluate(test))
    audit = None if observer is None else stages.run(
        "Table 6", lambda: CounterfactualAudit(inn, observer, images=100, steps=11).evaluate(test))
    grid = stages.run("grid", lambda: Counterfactuals(inn, rows=10).explain(test, seed=0))
    png = grid.save(RECORDS / f"{name}.png", dpi=80, title=f"INN counterfactuals: {name}")["png"]
    Image.open(png).convert("RGB").quantize(256).save(png, optimize=True)
    Path(png).with_suffix(".json").unlink(missing_ok=True)
    change, inside = (audit.change(), audit.inside()) if audit is not None else ({}, {})
    model = config.model
    record = {
        "name": name,
        "base": EXPERIMENTS[name][0],
        "overrides": EXPERIMENTS[name][1],
        "beta": model.get("beta"),
        "phi_shape": list(inn.phi_shape),
        "steps": model.get("steps"),
        "hidden_channels": model.get("hidden_channels"),
        "coupling": model.get("coupling", "affine"),
        "epochs": len(history),
        "images_seen": len(history) * min(read_manifest(STUDY)["splits"][config.training.train_split]["n"],
                                          config.training.max_train_samples or float("inf")),
        "training_minutes": round(sum(h["seconds"] for h in history) / 60, 1),
        "images_per_second": round(float(np.mean([h["images_per_second"] for h in history])), 1),
        "test_accuracy": acc,
        "train_accuracy": train_acc,  # against the true class; far above the test's: memorised
        **spread,
        "test_bits_per_dim": bits,
        "flip_percent": {r.attribute: r.flip_percent.value for r in importance.rows},
        "table6": {a: change[a][0] for a in change},
        "inside": {a: inside[a] for a in inside if not np.isnan(inside[a])},
        "seconds": {label: round(seconds, 1) for label, seconds in stages.times.items()},
    }
    atomic_write_json(RECORDS / f"{name}.json", record)
    return record


def phi_spread(inn, images: np.ndarray) -> dict[str, float]:
    """How far φ moves along the classifier's weight w over the 99 % span of the logits, in units of
    φ's own spread: along w (std of φ·ŵ) and per coordinate (the mean std, the prior's is 1). A class
    direction of small spread is one the flow spends little of its code on."""
    import torch

    from two4two.models.inputs import image_batch

    with torch.no_grad():
        phi = torch.cat([inn.encode(image_batch(images[i:i + 100])).phi.flatten(1) for i in range(0, len(images), 100)])
        w = inn.weight.detach().flatten()
    logits = (phi @ w).numpy()
    span = float(np.diff(np.quantile(logits, [0.005, 0.995]))[0])
    return {"phi_std_along_w": float(np.std(logits) / w.norm()), "phi_std_mean": float(phi.std(0).mean()),
            "phi_step_along_w": span / float(w.norm())}


def train_keeping_epochs(name: str) -> Path:
    """Train NAME in a child `two4two train --resume` and copy its kept checkpoint (the best
    validation so far) after every epoch to epochs/epoch-K.pt: the model a training stopped after
    K epochs would ship. The child writes model.pt before history.json, so a longer history means
    model.pt is already the one for that epoch."""
    import shutil
    import subprocess
    import time

    from two4two.models.training import load_train_config

    config_path = experiment_config(name)
    out = ROOT / load_train_config(config_path).output_dir
    (out / "epochs").mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).with_name("two4two")), "train", str(config_path), "--resume"]
    child = subprocess.Popen(command, cwd=ROOT)

    def keep() -> None:
        history = out / "history.json"
        done = len(json.loads(history.read_text())) if history.exists() else 0
        for epoch in range(1, done + 1):
            if not (out / "epochs" / f"epoch-{epoch}.pt").exists() and (out / "model.pt").exists():
                shutil.copyfile(out / "model.pt", out / "epochs" / f"epoch-{epoch}.pt")

    while child.poll() is None:
        keep()
        time.sleep(10)
    keep()
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode})")
    return out / "model.pt"


def curve(name: str, observer, train: bool = True) -> dict:
    """Test accuracy and Table 6 of the checkpoint kept after each epoch of NAME (`train=False`:
    of the epochs kept so far, e.g. of a training stopped at the end of a session)."""
    from two4two.explain.audit import CounterfactualAudit
    from two4two.models.training import load_classifier, read_checkpoint
    from two4two.split import Split

    if train:
        train_keeping_epochs(name)
    test = Split(STUDY, "test")
    rows = []
    for path in sorted((ROOT / "models" / "inn_experiments" / name / "epochs").glob("epoch-*.pt"),
                       key=lambda p: int(p.stem.split("-")[1])):
        inn = load_classifier(path)
        audit = CounterfactualAudit(inn, observer, images=100, steps=11).evaluate(test)
        change, inside = audit.change(), audit.inside()
        rows.append({"after_epoch": int(path.stem.split("-")[1]),
                     "kept_epoch": read_checkpoint(path, keys=("epoch",))["epoch"],
                     "test_accuracy": accuracy(inn, STUDY), "table6": {a: change[a][0] for a in change},
                     "inside": min(v for v in inside.values() if not np.isnan(v))})
        print(json.dumps(rows[-1]))
    history = json.loads((ROOT / "models" / "inn_experiments" / name / "history.json").read_text())
    record = {"name": name, "overrides": EXPERIMENTS[name][1], "epochs": rows, "planned_epochs": EXPERIMENTS[name][1]
              .get("training", {}).get("epochs", 10), "images_per_second": [round(h["images_per_second"], 1) for h in history]}
    atomic_write_json(RECORDS / f"{name}.curve.json", record)
    return record


def _curve_lines() -> list[str]:
    lines = []
    for path in sorted(RECORDS.glob("*.curve.json")):
        record = json.loads(path.read_text())
        lines += [f"## Does training move the legs? {record['name']}, measured after every epoch", "",
                  "The checkpoint a training stopped after K epochs would keep (the best validation so far), "
                  "measured as above (Table 6 on 100 test images). Written by "
                  f"`python benchmarks/inn_experiments.py --curve {record['name']}`; "
                  f"{len(record['epochs'])} of the {record.get('planned_epochs', 10)} planned epochs measured "
                  "(the one-cycle schedule spans all of them).", "",
                  "| after epoch | kept epoch | accuracy | " + " | ".join(ATTRIBUTES[a].label for a in TABLE6)
                  + " | inside |",
                  "|---" * (4 + len(TABLE6)) + "|"]
        for row in record["epochs"]:
            lines.append(f"| {row['after_epoch']} | {row['kept_epoch']} | {row['test_accuracy']:.3f} | "
                         + " | ".join(_cell(row["table6"].get(a)) for a in TABLE6) + f" | {share_text(row['inside'])} |")
        whole = RECORDS / f"{record['name']}.json"  # the same config trained to the end, in the table above
        if whole.exists() and (full := json.loads(whole.read_text()))["table6"]:
            lines.append(f"| {full['epochs']} (the whole run above) | – | {full['test_accuracy']:.3f} | "
                         + " | ".join(_cell(full["table6"].get(a)) for a in TABLE6)
                         + f" | {share_text(min(full['inside'].values()))} |")
        lines.append("")
    return lines


def _spread(record: dict) -> str:
    keys = ("phi_std_along_w", "phi_std_mean", "phi_step_along_w")
    return " / ".join(f"{record[k]:.3g}" for k in keys) if keys[0] in record else "not measured"


def _cell(value) -> str:
    return "not measured" if value is None else f"{value:.3f}"


def write_doc() -> None:
    records = [json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json")) if p.stem in EXPERIMENTS]
    records.sort(key=lambda r: list(EXPERIMENTS).index(r["name"]))
    header = ["experiment", "β", "φ", "steps", "hidden", "epochs", "min", "img/s", "accuracy", "train accuracy", "bits/dim",
              "φ: std along w / mean std / step along w",
              *(ATTRIBUTES[a].label for a in TABLE6), "inside", "flip % legs / colour / shape", "largest other flip %"]
    lines = [
        "# INN configurations tried (issue 31)", "",
        "Written by `python benchmarks/inn_experiments.py` from `docs/inn_experiments/NAME.json`; each row is "
        "one training on study2022_64px (20 000 training images, seed 0), measured on its 500 test images. "
        "*φ*: φ's standard deviation along the classifier's weight w and its mean per coordinate (the prior's: 1), "
        "and how far a counterfactual moves φ along w over the 99 % span of the logits. "
        "Table 6 columns: the observer's mean max − min along counterfactual interpolations over 99 % of the "
        "logits (paper: legs 0.66, colour 0.44, shape 0.62). *Inside*: the smallest share, over the attributes, "
        "of readings inside [−0.05, 1.05] (must be ≥ 95 %). Grids: `docs/inn_experiments/NAME.png`.", "",
        "| " + " | ".join(header) + " |",
        "|---" * len(header) + "|",
    ]
    for r in records:
        others = max(v for a, v in r["flip_percent"].items() if a not in ("arm_position", "obj_color", "spherical"))
        worst_inside = min(r["inside"].values()) if r["inside"] else float("nan")
        flips = " / ".join(f"{r['flip_percent'].get(a, float('nan')):.1f}" for a in ("arm_position", "obj_color", "spherical"))
        lines.append(
            f"| {r['name']} | {r['beta']:g} | {'×'.join(map(str, r['phi_shape']))} | {r['steps']} | {r['hidden_channels']} "
            f"| {r['epochs']} | {r['training_minutes']:.0f} | {r['images_per_second']:.0f} | {r['test_accuracy']:.3f} "
            f"| {_cell(r.get('train_accuracy'))} | {r['test_bits_per_dim']:.3f} | {_spread(r)} | " + " | ".join(_cell(r["table6"].get(a)) for a in TABLE6)
            + f" | {share_text(worst_inside)} | {flips} | {others:.1f} |")
    paper = " | ".join(f"{PAPER_AUDIT[a]:.3f}" for a in TABLE6)
    lines += [f"| *paper (128 px, GPU, 2.5 M images)* | 0.0001 | 768×1×1 | 7 × 32 | 48 … 512 | – | – | – | 0.967 | – | – | – | {paper} | – | – | – |", ""]
    lines += ["## Stability pilots of the 1 × 1 φ (configs/inn-cpu-global.yaml's architecture)", ""]
    lines += [f"- {p}" for p in PILOTS] + [""]
    lines += _curve_lines()
    missing = [n for n in EXPERIMENTS if n not in {r["name"] for r in records}]
    if missing:
        lines += [f"Not run yet: {', '.join(missing)}.", ""]
    atomic_write_text(DOC, "\n".join(lines))
    print(f"wrote {DOC.relative_to(ROOT)} ({len(records)} experiments)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), help="these experiments (default: every one)")
    parser.add_argument("--list", action="store_true", help="list the experiments and whether each has a record")
    parser.add_argument("--curve", choices=list(EXPERIMENTS),
                        help="train this experiment keeping every epoch's checkpoint; accuracy and Table 6 after each")
    parser.add_argument("--no-train", action="store_true", help="with --curve: measure the epochs kept so far, train nothing")
    parser.add_argument("--no-observer", action="store_true",
                        help="skip Table 6 (no observer trained yet): the record says so, and a later run without it fills it in")
    args = parser.parse_args()
    if args.list:
        for name, (base, overrides) in EXPERIMENTS.items():
            print(f"{name:20s} {'recorded' if (RECORDS / f'{name}.json').exists() else '-':9s} {base} {overrides or ''}")
        return
    from two4two.models.training import load_observer

    if not (STUDY / "manifest.json").exists():
        render(ROOT / "configs/study2022_64px.yaml")
    observer = None
    if not args.no_observer:
        if not trained(SHIPPED_OBSERVER):  # the kept observer (models/observer_cpu_64px) needs no data
            if not (ROOT / "data/unbiased_observer_64px/manifest.json").exists():
                render(ROOT / "configs/unbiased_observer_64px.yaml")
            train(SHIPPED_OBSERVER)
        observer = load_observer(ROOT / "models/observer_cpu_64px")
    if args.curve:
        curve(args.curve, observer, train=not args.no_train)
        write_doc()
        return
    for name in args.only or list(EXPERIMENTS):
        record = run(name, observer)
        print(json.dumps({k: record[k] for k in ("name", "test_accuracy", "test_bits_per_dim", "table6")}, indent=1))
        write_doc()


if __name__ == "__main__":
    main()
