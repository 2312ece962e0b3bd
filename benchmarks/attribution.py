"""Attribution maps of the small CNN and the INN on 500 study2022 test images (64 px), scored
against the generator's ground truth, with seconds per method and the whole evaluation's time.

    python benchmarks/attribution.py [--models cnn inn] [--images 500] [--resamples 1000] [--sanity-images 32]

Builds what is missing and reuses what is finished (the renders, the trainings of
configs/small_cnn_study2022_64px.yaml, inn-cpu.yaml and the model-contrast pair
small_cnn_bg_biased_64px.yaml / small_cnn_unbiased_64px.yaml, every part-removal split of the
test images); a model whose section is written is not evaluated again (delete
benchmarks/results/attribution/MODEL/ to redo it). Writes docs/attribution.md after each
model, with: seconds per method; the methods × scores table with intervals and ranks; the
rank correlation between the scores; the model contrast's measured reliance; the Quantus
cross-check; and docs/attribution_maps_MODEL.png (overlay grid) and
docs/attribution_sanity_MODEL.png (cascading randomisation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_tables import ROOT, Stages, render, train, trained  # noqa: E402  (the sibling benchmark's stages)

from two4two.animal import BLOCK_GROUPS, BLOCK_NAMES  # noqa: E402
from two4two.layout import has_split, removal_split  # noqa: E402
from two4two.dataset import ensure  # noqa: E402
from two4two.explain.attribution import LABELS, METHODS, Attributions  # noqa: E402
from two4two.explain.attribution_scores import AttributionEvaluation  # noqa: E402
from two4two.importance import Importance, available_interventions  # noqa: E402
from two4two.io import atomic_write_text  # noqa: E402
from two4two.models.training import load_classifier  # noqa: E402
from two4two.split import Split  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "attribution"
DOC = ROOT / "docs" / "attribution.md"
MODELS = {"cnn": ("small CNN", "configs/small_cnn_study2022_64px.yaml"), "inn": ("INN", "configs/inn-cpu.yaml")}
CONTRAST = ("configs/small_cnn_bg_biased_64px.yaml", "configs/small_cnn_unbiased_64px.yaml")
NOT_FOR_INN = ("lrp",)  # captum's LRP rules have none for the couplings (AttributionError says so)


def small_png(source: Path, target: Path) -> None:
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(source).convert("RGB").quantize(256).save(target, optimize=True)


def contrast_pair(stages: Stages, study: Path, bootstrap: int) -> tuple[tuple, str]:
    """The two small CNNs of the model contrast, and their measured reliance on the background."""
    for config in CONTRAST:
        data_config = ROOT / _dataset_config(config)
        stages.run(f"render {data_config.stem}", lambda c=data_config: render(c),
                   reused=(ROOT / "data" / data_config.stem / "manifest.json").exists())
    checkpoints = [stages.run(f"train {Path(c).stem}", lambda c=c: train(ROOT / c), reused=trained(ROOT / c)) for c in CONTRAST]
    models = tuple(load_classifier(c) for c in checkpoints)
    lines = ["| model | trained on | bg flip % | bg median \\|Δlogit\\| | bg R² | legs R² |", "|---|---|---|---|---|---|"]
    for config, model in zip(CONTRAST, models):
        result = Importance(model, n_resamples=bootstrap, model_name=Path(config).stem).evaluate(Split(study, "test"))
        rows = {r.attribute: r for r in result.rows}
        bg = rows["bg_color"]
        lines.append(f"| {Path(config).stem} | {_dataset_config(config)} | {bg.flip_percent.fmt(1)} "
                     f"| {bg.median_abs_delta_logit.fmt(3)} | {bg.r_squared.fmt(3)} | {rows['arm_position'].r_squared.fmt(3)} |")
    return models, "\n".join(lines)


def _dataset_config(model_config: str) -> str:
    from two4two.models.training import load_train_config

    return str(load_train_config(ROOT / model_config).dataset_config)


def evaluate_model(key: str, study: Path, args, contrast, stages: Stages) -> str:
    """One model's section of docs/attribution.md (reused when written)."""
    out = OUT / key
    section = out / "section.md"
    if section.exists():
        print(f"{MODELS[key][0]}: reusing {section}")
        return section.read_text()
    label, config = MODELS[key]
    checkpoint = stages.run(f"train {label}", lambda: train(ROOT / config), reused=trained(ROOT / config))
    model = load_classifier(checkpoint)
    split = Split(study, "test")
    methods = [m for m in METHODS if not (key == "inn" and m in NOT_FOR_INN)]
    parts = [*BLOCK_GROUPS, *BLOCK_NAMES]
    removals = {p: split.removal(p) for p in parts}
    attributes = available_interventions(study, "test")

    t0 = time.perf_counter()
    maps = Attributions(model, methods, images=args.images, progress=True).explain(split, seed=0)
    map_seconds = time.perf_counter() - t0
    paths = maps.save(out / "maps", rows=6)
    t1 = time.perf_counter()
    evaluation = AttributionEvaluation(model, n_resamples=args.resamples, sanity_images=args.sanity_images,
                                       contrast=contrast if key == "cnn" else None, seed=0)
    scores = evaluation.evaluate(split, maps, removals, attributes)
    eval_seconds = time.perf_counter() - t1
    written = scores.write(out / "scores")
    quantus = quantus_section(maps, split)

    small_png(paths["png"], ROOT / "docs" / f"attribution_maps_{key}.png")
    if "sanity_png" in written:
        small_png(written["sanity_png"], ROOT / "docs" / f"attribution_sanity_{key}.png")
    n = len(maps.ids)
    timing = ["| method | seconds | images/s |", "|---|---|---|"]
    timing += [f"| {LABELS[m]} | {s:.1f} | {n / max(s, 1e-9):.0f} |" for m, s in maps.seconds.items()]
    drops = scores.extra.get("removal_drop", {})
    removal = ["| part removed | mean drop of the explained logit | mean \\|drop\\| | prediction flips % |", "|---|---|---|---|"]
    removal += [f"| {p.replace('_', ' ')} | {d['mean']:+.2f} | {d['mean_abs']:.2f} | {d['flip_percent']:.1f} |" for p, d in drops.items()]
    contrast_lines = []
    if "contrast" in scores.extra:
        contrast_lines = ["Background share of |map| for the background-reliant and the unreliant CNN (model contrast):", "",
                          "| method | share, reliant | share, unreliant | mean difference [95 %] | passes on average |", "|---|---|---|---|---|"]
        for m, c in scores.extra["contrast"].items():
            d = c["mean_difference"]
            contrast_lines.append(f"| {LABELS[m]} | {c['mean_share_reliant']:.3f} | {c['mean_share_unreliant']:.3f} "
                                  f"| {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}] | {'yes' if c['passes_on_average'] else 'no'} |")
        contrast_lines.append("")
    faithfulness_lines = []
    if args.faithfulness_images:
        faithfulness_lines = faithfulness_section(model, split, maps, scores, args, out)
    text = "\n".join([
        f"## {label} ({n} test images, test accuracy {accuracy(model, split, n):.3f})", "",
        f"Maps of {len(methods)} methods in {map_seconds / 60:.1f} min; the evaluation (every score below, the model "
        f"contrast's maps{' ' if key == 'cnn' else ' (CNN only) '}and the cascading randomisation of {args.sanity_images} images) "
        f"in {eval_seconds / 60:.1f} min; together **{(map_seconds + eval_seconds) / 60:.1f} min**.", "",
        f"![Attribution maps of the {label}](attribution_maps_{key}.png)", "",
        "### Seconds per method", "", *timing, "",
        "### Scores (value [95 % interval] (rank; 1 = best); ↓: lower is better)", "", scores.format_table(), "",
        "### Rank correlation between the scores (Spearman ρ across methods)", "", scores.format_correlation(), "",
        "### Part removal: the explained logit with a block group re-rendered away", "", *removal, "",
        *contrast_lines,
        f"### Sanity check (cascading randomisation, {args.sanity_images} images)", "",
        f"![Sanity check of the {label}](attribution_sanity_{key}.png)", "",
        "### Quantus 0.6.0 on the same maps", "", quantus, "", *faithfulness_lines])
    atomic_write_text(out / "timing.json", json.dumps({"maps_seconds": map_seconds, "evaluation_seconds": eval_seconds,
                                                       "per_method": maps.seconds}, indent=2) + "\n")
    atomic_write_text(section, text)
    return text


def faithfulness_section(model, split: Split, maps, scores, args, out: Path) -> list[str]:
    """ROAD (MoRF/LeRF) and masked-pixel curves of the same maps, merged into the score table: does
    the faithfulness ranking agree with the ground-truth scores?"""
    from two4two.explain.attribution import AttributionMaps
    from two4two.explain.faithfulness import Faithfulness

    k = min(args.faithfulness_images, len(maps.ids))
    subset = AttributionMaps({m: a[:k] for m, a in maps.maps.items()}, maps.ids[:k], maps.targets[:k], maps.logits[:k], maps.seconds)
    t0 = time.perf_counter()
    result = Faithfulness(model, progress=True).evaluate(split, subset)
    seconds = time.perf_counter() - t0
    result.write(out / "faithfulness")
    merged = scores.merged(result.score_intervals(args.resamples))
    merged.write(out / "scores_with_faithfulness")
    names, matrix = merged.rank_correlation()
    road = names.index("road_probability_gap")
    agreement = sorted(((matrix[road, j], score_label(n)) for j, n in enumerate(names) if j != road and np.isfinite(matrix[road, j])),
                       reverse=True)
    cells = ", ".join(f"{label} {rho:+.2f}" for rho, label in agreement)
    small_png(out / "faithfulness" / "faithfulness.png", ROOT / "docs" / f"faithfulness_{Path(out).name}.png")
    return [f"### Faithfulness: ROAD (noisy linear imputation) and masked-pixel curves, {k} images, {seconds / 60:.1f} min", "",
            result.format_table(), "", f"![MoRF, LeRF and masked-pixel curves](faithfulness_{Path(out).name}.png)", "",
            f"Rank correlation (Spearman ρ across methods) of the ROAD probability gap with each other score: {cells}.", ""]


def score_label(name: str) -> str:
    from two4two.explain.attribution_scores import SCORE_BY_NAME

    return SCORE_BY_NAME[name].label


def accuracy(model, split: Split, n: int) -> float:
    logits = split.logits(model)[:n]
    return float(((logits > 0) == split.true_labels[:n].astype(bool)).mean())


def quantus_section(maps, split: Split) -> str:
    try:
        from two4two.explain.quantus_check import cross_check, format_agreement
    except ImportError:
        return "(not run: pip install -e '.[dev]' for quantus)"
    n = len(maps.ids)
    rows = cross_check(maps.maps, split.masks[:n], images=split.images[:n])
    agree = sum(r.agree for r in rows)
    total = sum(r.n for r in rows)
    differing = [r for r in rows if r.agree < r.n or r.quantus_only or r.refused]
    head = (f"Pointing game, relevance mass and relevance rank accuracy on the animal and the right legs: "
            f"{agree} of {total} image scores agree within 1e-5. Rows where they do not "
            "(two4two/explain/quantus_check.py names the cause of each):")
    return head + "\n\n" + (format_agreement(differing) if differing else "(none)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--sanity-images", type=int, default=32)
    parser.add_argument("--faithfulness-images", type=int, default=500, help="images for the ROAD curves (0: skip)")
    args = parser.parse_args()
    stages = Stages(OUT / "timings.json")
    study = stages.run("render study2022_64px", lambda: render(ROOT / "configs/study2022_64px.yaml"),
                       reused=(ROOT / "data/study2022_64px/manifest.json").exists())
    stages.run("render part removals", lambda: ensure(study, removals={"test": [*BLOCK_GROUPS, *BLOCK_NAMES]}),
               reused=all(has_split(study, removal_split("test", p)) for p in (*BLOCK_GROUPS, *BLOCK_NAMES)))
    contrast, contrast_table = contrast_pair(stages, study, args.resamples) if "cnn" in args.models else (None, "")
    sections = ["# Attribution maps scored against the generator's ground truth", "",
                "Written by `python benchmarks/attribution.py` on this 2-core CPU: study2022 at 64 px, the first "
                f"{args.images} test images, maps for the model's predicted class. Definitions and sources of every score: "
                "`two4two/explain/attribution_scores.py`. Intervals: bootstrap 95 % over images. Integrated gradients, DeepLift "
                "and occlusion start from a black baseline on the CNN and from mid-grey on the INN, whose encoder gives NaN "
                "on images near black (`two4two/explain/attribution.py`).", ""]
    if contrast_table:
        sections += ["## The model contrast's two CNNs, measured by `two4two evaluate importance` on the study2022 test interventions", "",
                     contrast_table, ""]
    for key in args.models:
        sections.append(evaluate_model(key, study, args, contrast, stages))
        atomic_write_text(DOC, "\n".join(sections) + "\n")
        print(sections[-1])
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
