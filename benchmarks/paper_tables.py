"""The paper's tables on the original's animal: our figures beside Sixt et al. (2022), table by table.

    python benchmarks/paper_tables.py [--only cnn|inn|observer ...] [--resamples B]
                                      [--inn-configs C ...] [--observer-config C]

Builds what is missing and reuses what is finished (renders resume, trainings resume from
their last epoch with `--resume` semantics), then prints and writes docs/paper_tables.md:
  * Table 1/3: flip %, median |Δlogit| and R² per attribute, with bootstrap 95 % intervals,
    for the small CNN (configs/small_cnn_study2022_64px.yaml) and the INN (configs/inn-cpu.yaml);
  * the INN's test accuracy and bits per dimension;
  * Table 6: mean max − min of every attribute along counterfactual interpolations spanning
    99 % of the INN's logits, read by the observer (configs/observer-cpu.yaml);
  * Table 7: the observer's test MSE per attribute on the [0, 1] scale, beside the mean predictor;
and regenerates the documentation's model figures (counterfactual grid, baseline grid, concepts).
`--inn-configs` adds experiment INNs (e.g. configs/inn-cpu-phi6.yaml): each gets its own Table
1/3 and Table 6 sections, headed by its config's name, and its figures under
benchmarks/results/paper_tables/<config>/, so the shipped INN's sections and the documentation's
figures stay the shipped INN's. `--observer-config` does the same for the observer.
Each stage's wall time on this machine is kept in benchmarks/results/paper_tables/timings.json,
so a rerun that reuses a stage still reports what it cost when it ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from importance import ROOT, render  # noqa: E402  (the sibling benchmark's render stage)

from two4two.dataset import load_split_arrays, read_split  # noqa: E402
from two4two.importance import Importance  # noqa: E402
from two4two.io import atomic_write_json, atomic_write_text  # noqa: E402
from two4two.models.training import (  # noqa: E402
    checkpoint_written_for, load_classifier, load_observer, load_train_config, parse_model_config, predict_logits, train_model,
    training_split_of)
from two4two.parameters import ATTRIBUTES  # noqa: E402
from two4two.split import Split  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "paper_tables"
DOC = ROOT / "docs" / "paper_tables.md"

# Sixt et al. (2022), Table 1/3: the paper's INN on its study dataset.
PAPER_IMPORTANCE = {
    "arm_position": (41.68, 2.493, 0.933),
    "obj_color": (7.08, 0.886, 0.751),
    "spherical": (3.92, 0.577, 0.307),
    "position_y": (2.96, 0.597, 0.007),
    "bg_color": (2.64, 0.523, 0.006),
    "obj_rotation_yaw": (3.48, 0.669, 0.001),
    "obj_rotation_roll": (2.26, 0.413, 0.001),
    "bending": (3.64, 0.605, 0.000),
    "obj_rotation_pitch": (3.50, 0.627, 0.000),
    "position_x": (3.38, 0.581, 0.000),
}
# Table 6: mean max − min along counterfactual interpolations, as the paper's observer read them.
PAPER_AUDIT = {
    "arm_position": 0.662, "spherical": 0.624, "obj_color": 0.440, "obj_rotation_pitch": 0.186,
    "obj_rotation_yaw": 0.102, "position_x": 0.105, "position_y": 0.103, "bending": 0.059,
    "bg_color": 0.045, "obj_rotation_roll": 0.003,
}
SHIPPED_INN = ROOT / "configs/inn-cpu.yaml"
SHIPPED_OBSERVER = ROOT / "configs/observer-cpu.yaml"
PAPER_OBSERVER_MSE = 0.0022  # Table 7: every attribute at or below this, 128 px, on a GPU
PAPER_INN_ACCURACY = 0.967


class Stages:
    """Wall time per stage, kept across reruns (a reused stage reports its first run)."""

    def __init__(self, path: Path):
        self.path = path
        self.times = json.loads(path.read_text()) if path.exists() else {}

    def run(self, label: str, fn, reused: bool = False):
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        if not reused:
            self.times[label] = seconds
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, self.times)
        if label in self.times:
            print(f"[{label}: {self.times[label] / 60:.1f} min{' (first run; reused now)' if reused else ''}]")
        else:  # built before this machine kept timings: docs/paper_tables.md keeps the time it took then
            print(f"[{label}: reused; its first run's time is not on record here]")
        return result


def model_config(config_path: Path, seed: int | None = None):
    """A shipped training config, or the same with another seed trained into `<output_dir>_seed<seed>`."""
    config = load_train_config(config_path)
    if seed is None or seed == config.training.seed:
        return config
    raw = {**config.raw, "output_dir": f"{config.raw['output_dir']}_seed{seed}",
           "training": {**config.raw.get("training", {}), "seed": seed}}
    return parse_model_config(raw, f"{config_path} (seed {seed})")


def trained(config_path: Path, seed: int | None = None) -> bool:
    config = model_config(config_path, seed)
    history = ROOT / config.output_dir / "history.json"
    if not history.exists():
        return False
    # last.pt while a training's files are all here; model.pt alone for the observer kept in the
    # repository (models/observer_cpu_64px: its model.pt and history.json, to spare a session 35 minutes)
    state = ROOT / config.output_dir / "last.pt"
    state = state if state.exists() else state.with_name("model.pt")
    return (state.exists() and checkpoint_written_for(state, config)
            and len(json.loads(history.read_text())) == config.training.epochs)


def train(config_path: Path, seed: int | None = None) -> Path:
    """Train, continuing an interrupted run of the same config; a changed config starts afresh."""
    config = model_config(config_path, seed)
    config.data, config.output_dir = ROOT / config.data, ROOT / config.output_dir
    state = config.output_dir / "last.pt"
    same = state.exists() and checkpoint_written_for(state, config)
    if state.exists() and not same:
        print(f"{config.output_dir}: trained with another config; training afresh")
    return train_model(config, resume=same)


def importance_table(stages: Stages, name: str, checkpoint: Path, study: Path, bootstrap: int):
    model = load_classifier(checkpoint)
    result = stages.run(f"importance: {name}", lambda: Importance(
        model, n_resamples=bootstrap, model_name=name, training_params=training_split_of(checkpoint)).evaluate(Split(study, "test")))
    result.write(OUT, "importance_" + name.lower().replace(" ", "_"))
    rows = {r.attribute: r for r in result.rows}
    lines = ["| factor | flip % (ours) | paper's INN | median \\|Δlogit\\| (ours) | paper's INN | R² (ours) | paper's INN |",
             "|---|---|---|---|---|---|---|"]
    for attribute, (flip, delta, r2) in PAPER_IMPORTANCE.items():
        r = rows.get(attribute)
        if r is None:
            continue
        lines.append(
            f"| {ATTRIBUTES[attribute].label} | {_iv(r.flip_percent, 2)} | {flip:.2f} | {_iv(r.median_abs_delta_logit, 3)} | {delta:.3f} "
            f"| {_iv(r.r_squared, 3)} | {r2:.3f} |")
    return result, "\n".join(lines)


def _iv(interval, digits: int) -> str:
    return f"{interval.value:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def accuracy(model, root: Path, split: str = "test") -> float:
    images, params = load_split_arrays(root, split, progress=False)
    logits = predict_logits(model, images)
    return float(((logits > 0) == np.array([p.true_label for p in params], bool)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=("cnn", "inn", "observer"), default=("cnn", "inn", "observer"))
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--cnn-seeds", type=int, nargs="*", default=[1, 2],
                        help="more seeds of the small CNN, for the run-to-run spread (none: skip)")
    parser.add_argument("--inn-configs", type=Path, nargs="+", default=[SHIPPED_INN],
                        help="INN configs to tabulate; any but the shipped one is an experiment with sections of its own")
    parser.add_argument("--observer-config", type=Path, default=SHIPPED_OBSERVER,
                        help="the observer that reads Tables 6 and 7")
    args = parser.parse_args()
    args.inn_configs = [_rooted(c) for c in args.inn_configs]
    args.observer_config = _rooted(args.observer_config)
    stages = Stages(OUT / "timings.json")
    sections = ["# The paper's tables on the original's animal",
                "",
                "Written by `python benchmarks/paper_tables.py` (two4two on this 2-core CPU, 64 px) beside "
                "Sixt et al. (2022), whose models saw 128 px on a GPU. Intervals: bootstrap 95 %.",
                ""]
    study_config = ROOT / "configs/study2022_64px.yaml"
    study = stages.run("render study2022_64px", lambda: render(study_config), reused=(ROOT / "data/study2022_64px/manifest.json").exists())

    if "cnn" in args.only:
        cnn_config = ROOT / "configs/small_cnn_study2022_64px.yaml"
        ckpt = stages.run("train small CNN", lambda: train(cnn_config), reused=trained(cnn_config))
        acc = accuracy(load_classifier(ckpt), study)
        _, table = importance_table(stages, "CNN", ckpt, study, args.resamples)
        sections += [f"## Table 1/3, small CNN (test accuracy {acc:.3f} against the true class)", "", table, ""]
        print("\n".join(sections[-4:]))
        write_doc(sections, stages)

    if "inn" in args.only:
        for inn_config in args.inn_configs:
            sections += inn_tables(stages, inn_config, study, args)
            write_doc(sections, stages)

    if "observer" in args.only:
        sections += observer_tables(stages, study, args)
        print("\n".join(sections[-12:]))
        write_doc(sections, stages)

    if "cnn" in args.only and args.cnn_seeds:
        sections += seed_spread(stages, study, args)
        print("\n".join(sections[-16:]))

    write_doc(sections, stages)
    print(f"\nwrote {DOC}")


def _rooted(path: Path) -> Path:
    return path if path.is_absolute() else (ROOT / path).resolve()


def experiment_tag(config_path: Path, shipped: Path) -> str:
    """'' for the shipped config, else ' <config stem>': the sections and stages of an experiment are its own."""
    return "" if config_path.resolve() == shipped.resolve() else f" {config_path.stem}"


def inn_tables(stages: Stages, inn_config: Path, study: Path, args) -> list[str]:
    """Table 1/3 of one INN config, its accuracy and bits/dim; the documentation's figures for the shipped one."""
    tag = experiment_tag(inn_config, SHIPPED_INN)
    ckpt = stages.run(f"train INN{tag}", lambda: train(inn_config), reused=trained(inn_config))
    inn = load_classifier(ckpt)
    images, _ = load_split_arrays(study, "test", progress=False)
    acc, bits = accuracy(inn, study), inn.bits_per_dim(images)
    _, table = importance_table(stages, f"INN{tag}", ckpt, study, args.resamples)
    lines = [f"## Table 1/3, INN{tag} (test accuracy {acc:.3f}, paper {PAPER_INN_ACCURACY}; "
             f"test bits per dimension {bits:.3f})", "", table, ""]
    print("\n".join(lines))
    figures(stages, inn, study, ROOT / "docs" if not tag else OUT / tag.strip(), tag)
    return lines


def write_doc(sections: list[str], stages: Stages) -> None:
    """docs/paper_tables.md with the tables so far: a run stopped by the end of a session keeps what it
    finished, and a run of some tables (--only) keeps the others the file already holds."""
    old = _by_heading(DOC.read_text()) if DOC.exists() else {}
    # Stage times: those the file holds (another machine's or session's), updated by this run's.
    minutes = {**_timing_rows(old.get(TIMING_HEADING, "")), **{label: s / 60 for label, s in stages.times.items()}}
    timing = [f"{TIMING_HEADING} (a stage shared with other jobs took longer than alone)", "", "| stage | minutes |", "|---|---|"]
    timing += [f"| {label} | {m:.1f} |" for label, m in minutes.items()]
    new = _by_heading("\n".join(sections + timing) + "\n")
    merged = {**old, **new}  # the old order, new tables replacing theirs, then tables the file did not have
    # Each part ends in one blank line, so no table runs into the heading after it.
    atomic_write_text(DOC, "\n\n".join(part.strip("\n") for part in merged.values()) + "\n")


TIMING_HEADING = "## Wall time per stage on this machine"


def _timing_rows(part: str) -> dict[str, float]:
    """The stage → minutes rows of the timing table in an earlier docs/paper_tables.md."""
    rows = {}
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("stage", "---"):
            try:
                rows[cells[0]] = float(cells[1])
            except ValueError:
                continue
    return rows


def _by_heading(text: str) -> dict[str, str]:
    """The document cut at its '## ' headings, keyed by the heading up to its first '(' (the
    figures in brackets change from run to run; the table named before them does not)."""
    parts, key = {}, ""
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            key = line.split("(")[0].strip()
        parts[key] = parts.get(key, "") + line
    return parts


def observer_tables(stages: Stages, study: Path, args) -> list[str]:
    from observer import mean_predictor_mse  # the sibling benchmark's trivial baseline

    from two4two.explain.audit import CounterfactualAudit, share_text
    from two4two.models.observer import OBSERVED

    data_config = ROOT / "configs/unbiased_observer_64px.yaml"
    unbiased = stages.run("render unbiased_observer_64px", lambda: render(data_config),
                          reused=(ROOT / "data/unbiased_observer_64px/manifest.json").exists())
    obs_config, obs_tag = args.observer_config, experiment_tag(args.observer_config, SHIPPED_OBSERVER)
    observer = load_observer(stages.run(f"train observer{obs_tag}", lambda: train(obs_config), reused=trained(obs_config)))
    images, params = load_split_arrays(unbiased, "test", progress=False)
    record = observer.validation_record(images, params)
    trivial = mean_predictor_mse(read_split(unbiased, "train"), params)
    lines = [f"## Table 7, observer{obs_tag} test MSE on the [0, 1] scale (unbiased test split)", "",
             "| attribute | MSE (ours) | mean predictor | ratio | paper |", "|---|---|---|---|---|"]
    for a in OBSERVED:
        mse = record[f"mse_{a}"]
        lines.append(f"| {ATTRIBUTES[a].label} | {mse:.5f} | {trivial[a]:.5f} | {mse / trivial[a]:.3f} | ≤ {PAPER_OBSERVER_MSE} |")
    lines.append("")
    for inn_config in args.inn_configs:
        if not trained(inn_config):
            continue
        tag = experiment_tag(inn_config, SHIPPED_INN)
        read_by = f", read by observer{obs_tag}" if obs_tag else ""
        inn = load_classifier(ROOT / load_train_config(inn_config).output_dir)
        audit = stages.run(f"audit (Table 6){tag}{obs_tag}",
                           lambda: CounterfactualAudit(inn, observer, images=100, steps=11).evaluate(Split(study, "test")))
        audit.write(OUT, f"audit{tag.replace(' ', '_')}{obs_tag.replace(' ', '_')}")
        change, inside = audit.change(), audit.inside()
        lines += [f"## Table 6, change along INN{tag} counterfactual interpolations{read_by} "
                  f"(99 % of the logits, {audit.targets[0]:+.2f} … {audit.targets[-1]:+.2f}, observer's reading)", "",
                  "| attribute | mean max−min (ours) | std | readings in [−0.05, 1.05] | paper |", "|---|---|---|---|---|"]
        for a in sorted(change, key=lambda a: -change[a][0]):
            lines.append(f"| {ATTRIBUTES[a].label} | {change[a][0]:.3f} | {change[a][1]:.3f} | {share_text(inside[a])} | "
                         f"{PAPER_AUDIT.get(a, float('nan')):.3f} |")
        lines.append("")
    return lines


def seed_spread(stages: Stages, study: Path, args) -> list[str]:
    """The small CNN's R² and flip % over seeds: how much of Table 1/3 is one run's luck."""
    config = ROOT / "configs/small_cnn_study2022_64px.yaml"
    seeds = [load_train_config(config).training.seed, *args.cnn_seeds]
    results = {}
    for seed in seeds:
        if seed == seeds[0]:  # the table's own run
            ckpt = ROOT / model_config(config).output_dir / "model.pt"
        else:
            ckpt = stages.run(f"train small CNN, seed {seed}", lambda seed=seed: train(config, seed), reused=trained(config, seed))
        model = load_classifier(ckpt)
        result = Importance(model, n_resamples=200, model_name=f"CNN seed {seed}").evaluate(Split(study, "test"))
        results[seed] = ({r.attribute: r for r in result.rows}, accuracy(model, study))
    lines = [f"## Small CNN over {len(seeds)} seeds (same config and data; R², then flip % in brackets)", "",
             "| factor | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for attribute in PAPER_IMPORTANCE:
        cells = [f"{rows[attribute].r_squared.value:.3f} ({rows[attribute].flip_percent.value:.1f})" for rows, _ in results.values()]
        lines.append(f"| {ATTRIBUTES[attribute].label} | " + " | ".join(cells) + " |")
    lines.append("| test accuracy | " + " | ".join(f"{acc:.3f}" for _, acc in results.values()) + " |")
    return lines + [""]


def figures(stages: Stages, inn, study: Path, out_dir: Path, tag: str = "") -> None:
    """The documentation's model figures (into docs/ for the shipped INN, an experiment's own folder otherwise)."""
    from PIL import Image

    from two4two.explain.baseline import Baseline
    from two4two.explain.concepts import Concepts
    from two4two.explain.counterfactual import Counterfactuals

    def small(path: Path) -> None:
        Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
        sidecar = path.with_suffix(".json")
        if sidecar.exists():
            sidecar.unlink()

    out_dir.mkdir(parents=True, exist_ok=True)
    split = Split(study, "test")
    grid = stages.run(f"figure: counterfactual grid{tag}", lambda: Counterfactuals(inn, rows=10).explain(split, seed=0))
    small(grid.save(out_dir / "inn_counterfactuals.png", dpi=90)["png"])
    base = stages.run(f"figure: baseline grid{tag}", lambda: Baseline(inn, rows=10).explain(split, seed=0))
    small(base.save(out_dir / "study_baseline.png", dpi=90)["png"])
    concepts = stages.run(f"figure: concepts{tag}", lambda: Concepts(inn, images=500).explain(split, seed=0))
    small(concepts.save(out_dir / "concepts_inn.png", dpi=90)["png"])


if __name__ == "__main__":
    main()
