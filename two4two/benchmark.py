"""`two4two benchmark CONFIG -o DIR`: does an explanation follow how much a model relies on a bias?

The config plants one bias at several strengths (0: absent, 1: the attribute alone separates the
classes), trains each architecture on each strength, measures every model's true reliance on the
bias with the importance module (flip % when the attribute is redrawn), and asks every attribution
method what share of its map lies on the pixels the bias lives in. A method that follows the model
has a share that rises with the reliance (Spearman ρ across the sweep) and tells models that rely
on the bias from models that do not (ROC AUC). Every model is measured and explained on one common
test split drawn without the bias, so a method that only looks at the image gives every model the
same map and cannot seem to follow the model by following the data.

Everything is kept in DIR as it is finished, so a stopped run continues where it stopped:

    data/strength-K/  data/test/    the training data of each strength; the common test split
    models/ARCH-K/                  each trained model (its training resumes after an interruption)
    measures/ARCH-K/                accuracy, reliance, the maps (attributions.npz) and every method's share;
                                    for the strongest bias also every single-model score (scores/)
    measures/deletion/              single-deletion ρ of `in_domain_removal.architecture` without bias,
                                    trained without and with in-domain part removal (models/ARCH-0-removal)
    leaderboard.md, leaderboard.html, ARCH.png, results.json

Only what a missing measure needs is rendered or trained, so a run whose measures were kept
(e.g. committed from an earlier session) does not render the data again.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from two4two.errors import ConfigError, Two4TwoError
from two4two.intervals import Interval, markdown_table, percentile_interval, spearman
from two4two.schema import Fields

BIAS_REGIONS = ("background", "animal", "arms", "body")  # where a bias attribute's pixels are (explain.attribution_scores)
LEGS = "arm_position"
DELETION_SPLIT = "deletion"  # the test images single deletion re-renders without each block
UNBIASED = "unbiased"  # reliance_threshold: relative to the architecture's model at the first strength


@dataclass(frozen=True)
class BenchmarkConfig:
    """What the sweep plants, trains and asks (read from YAML by `load_benchmark_config`)."""

    name: str
    raw: dict
    attribute: str  # the attribute made predictive of the class
    region: str  # the pixels it lives in
    low: float  # its range when unbiased; at strength s peaky draws from [low, high − s·half], stretchy from [low + s·half, high]
    high: float
    strengths: tuple[float, ...]
    # flip % above which a model counts as relying on the bias, or "unbiased": above its own architecture's unbiased model
    reliance_threshold: float | str
    data: dict  # sampler, seed, resolution, sizes, label noise, render settings
    architectures: dict[str, dict]  # name → {model: …, training: …} as in a model config
    methods: tuple[str, ...]
    images: int  # test images explained per model
    resamples: int
    removal_arch: str | None = None  # trained again on the unbiased data with in-domain part removal
    removal_rate: float = 0.0

    def model_names(self) -> list[tuple[str, int]]:
        return [(arch, k) for arch in self.architectures for k in range(len(self.strengths))]

    def deletion_models(self) -> list[tuple[str, bool]]:
        """(name, trained with in-domain removal) of the models single deletion compares (strength index 0)."""
        return [(f"{self.removal_arch}-0{'-removal' if removal else ''}", removal) for removal in (False, True)] \
            if self.removal_arch else []


def parse_benchmark_config(raw: Any, source: str = "<config>") -> BenchmarkConfig:
    from two4two.explain.attribution import check_methods, METHODS
    from two4two.parameters import MEASURED_ATTRIBUTES

    top = Fields(raw, source, allowed=("kind", "name", "bias", "data", "architectures", "methods", "images", "resamples",
                                      "in_domain_removal"),
                 required=("bias", "data", "architectures"))
    top.choice("kind", ("benchmark",), "benchmark")
    bias = top.mapping("bias", allowed=("attribute", "region", "range", "strengths", "reliance_threshold"),
                       required=("attribute", "range", "strengths"))
    attribute = bias.choice("attribute", [a for a in MEASURED_ATTRIBUTES if a != LEGS])
    span = bias.items("range")
    bias.check(len(span) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in span)
               and span[0] < span[1], "range", "[low, high] with low < high")
    strengths = bias.items("strengths", nonempty=True)
    bias.check(len(strengths) >= 2 and all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= 1
                                           for s in strengths) and strengths == sorted(set(strengths)),
               "strengths", "at least two increasing shares in [0, 1]")
    threshold = bias.raw.get("reliance_threshold", 5.0)
    if threshold != UNBIASED:
        bias.check(isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 <= threshold <= 100,
                   "reliance_threshold", f"a flip % in [0, 100], or {UNBIASED!r} (above the architecture's unbiased model)")
    data = top.mapping("data", allowed=("sampler", "seed", "resolution", "train", "validation", "test", "labeling_error",
                                        "render"), required=("train", "validation", "test"))
    for key in ("train", "validation", "test"):
        data.integer(key, low=1)
    data.integer("seed", 0, low=0)
    data.integer("resolution", 64, low=8, high=1024)
    data.number("labeling_error", 0.0, low=0.0, high=0.5)
    architectures = top.mapping("architectures", what="a mapping of architecture name → {model, training}")
    top.check(bool(architectures.raw), "architectures", "at least one architecture")
    for name in architectures.raw:
        architectures.mapping(name, allowed=("model", "training"), required=("model",))
    methods = top.get("methods", list(METHODS))
    top.check(isinstance(methods, list) and bool(methods), "methods", f"a list of methods from {', '.join(METHODS)}")
    try:
        methods = check_methods(methods)
    except Two4TwoError as exc:
        raise ConfigError(f"{source}: methods: {exc}") from None
    removal = top.mapping("in_domain_removal", allowed=("architecture", "rate"), what="a mapping {architecture, rate}")
    removal_arch = removal.choice("architecture", list(architectures.raw)) if removal.raw else None
    removal_rate = removal.number("rate", low=0.0, high=1.0) if removal.raw else 0.0
    return BenchmarkConfig(
        name=top.text("name", Path(source).stem), raw=raw, attribute=attribute,
        region=bias.choice("region", BIAS_REGIONS, "background"), low=float(span[0]), high=float(span[1]),
        strengths=tuple(float(s) for s in strengths), reliance_threshold=threshold,
        data=data.raw, architectures=dict(architectures.raw), methods=tuple(methods),
        images=top.integer("images", 100, low=2), resamples=top.integer("resamples", 1000, low=10),
        removal_arch=removal_arch, removal_rate=removal_rate)


def load_benchmark_config(path: str | Path) -> BenchmarkConfig:
    from two4two.config import read_yaml

    return parse_benchmark_config(read_yaml(path), str(path))


# ---- the configs of each stage --------------------------------------------------------------


def dataset_config(config: BenchmarkConfig, out: Path, strength: int | None, removal: bool = False):
    """The training data of strength index `strength` (with in-domain part removal if `removal`), or
    (None) the common test data without the bias: the test split, and the images single deletion
    removes blocks from. Every strength draws with the same seed, so the strengths differ in the bias
    and nothing else (and the removal data in the removed parts and nothing else)."""
    from two4two.config import parse_config

    data, size = config.data, config.data.get("resolution", 64)
    common = {"sampler": data.get("sampler", "unbiased"), "resolution": [size, size], "render": data.get("render", {})}
    if strength is None:
        deletion = {DELETION_SPLIT: {"n": config.images}} if config.removal_arch else {}
        return parse_config({**common, "name": f"{config.name}_test", "seed": data.get("seed", 0) + 1,
                             "output_dir": str(out / "data" / "test"),
                             "splits": {"test": {"n": data["test"], "interventions": [config.attribute, LEGS]}, **deletion}})
    half, s = (config.high - config.low) / 2, config.strengths[strength]
    planted = {"peaky": {"uniform": [config.low, config.high - s * half]},
               "stretchy": {"uniform": [config.low + s * half, config.high]}}
    noise, suffix = data.get("labeling_error", 0.0), "-removal" if removal else ""
    train = {"n": data["train"], "sampler_args": {"labeling_error": {"bernoulli": noise}},
             **({"part_removal": {"rate": config.removal_rate}} if removal else {})}  # each single block, as deletion removes
    return parse_config({**common, "name": f"{config.name}_strength{strength}{suffix}", "seed": data.get("seed", 0),
                         "output_dir": str(out / "data" / f"strength-{strength}{suffix}"), "sampler_args": {config.attribute: planted},
                         "splits": {"train": train, "validation": {"n": data["validation"]}}})


def model_config(config: BenchmarkConfig, out: Path, arch: str, strength: int, removal: bool = False):
    from two4two.models.training import parse_model_config

    spec, name = config.architectures[arch], f"{arch}-{strength}{'-removal' if removal else ''}"
    return parse_model_config({"kind": "classifier", "name": name,
                               "data": str(out / "data" / f"strength-{strength}{'-removal' if removal else ''}"),
                               "model": spec["model"], "training": spec.get("training", {}),
                               "output_dir": str(out / "models" / name)}, f"architectures.{arch}")


# ---- measuring one model --------------------------------------------------------------------


def flips_per_image(model, test, attribute: str, logits: np.ndarray) -> np.ndarray:
    """1 where redrawing `attribute` flips the model's decision on that test original, else 0
    (`logits`: the model's on the test originals, already computed by the caller)."""
    intervened = test.intervention(attribute)
    index = {p.id: i for i, p in enumerate(test.params)}
    flips = np.full(len(test), np.nan)
    order = np.array([index[p.original_id] for p in intervened.params])
    flips[order] = ((intervened.logits(model) > 0) != (logits[order] > 0)).astype(float)
    return flips


def _method(method: str, model, name: str):
    """`method` bound to the model called `name`; the random control draws anew for every model
    (seeded by the model's name: reproducible)."""
    from two4two.explain.attribution import attribution_method

    return attribution_method(method, model, seed=zlib.crc32(name.encode()) if method == "random" else 0)


def measure_model(config: BenchmarkConfig, model, name: str, test, training_params, out: Path, scores: bool = False) -> dict:
    """Accuracy, reliance (flip % and R² of the bias, R² of the legs), each method's maps and share;
    with `scores`, also every single-model attribution score of the maps (written to out/scores)."""
    import time

    from two4two.explain.attribution import AttributionError, AttributionMaps
    from two4two.explain.attribution_scores import region_masks, relevance_mass_accuracy
    from two4two.importance import Importance

    importance = Importance(model, [config.attribute, LEGS], n_resamples=config.resamples, model_name=name,
                            training_params=training_params).evaluate(test)
    rows = {r.attribute: r for r in importance.rows}
    n = min(config.images, len(test))
    images, masks = test.images[:n], test.masks[:n]
    logits = test.logits(model)
    targets = (logits[:n] > 0).astype(np.int64)
    regions = region_masks(masks, config.region)
    maps, seconds, shares, reasons = {}, {}, {}, {}
    for method in config.methods:
        start = time.perf_counter()
        try:
            maps[method] = _method(method, model, name).attribute(images, targets, masks)
        except AttributionError as exc:
            reasons[method] = str(exc)
            continue
        seconds[method] = time.perf_counter() - start
        shares[method] = relevance_mass_accuracy(maps[method], regions).tolist()
    kept = AttributionMaps(maps, [p.id for p in test.params[:n]], targets, logits[:n], seconds, images, masks,
                           {"model": name, "region": config.region})
    kept.save(out)
    if scores:  # no sanity cascade: it re-explains every image once per layer, hours for ResNet-18 here
        from two4two.explain.attribution_scores import AttributionEvaluation

        AttributionEvaluation(model, n_resamples=config.resamples, sanity_images=0).evaluate(
            test, kept, attributes=[config.attribute, LEGS]).write(out / "scores")
    return {
        "name": name,
        "test_accuracy": float(((logits > 0) == test.true_labels).mean()),
        "flip_percent": asdict(rows[config.attribute].flip_percent),
        "r_squared": asdict(rows[config.attribute].r_squared),
        "legs_r_squared": asdict(rows[LEGS].r_squared),
        "flips": flips_per_image(model, test, config.attribute, logits)[:n].tolist(),
        "shares": shares,
        "not_applicable": reasons,
        "seconds": seconds,
    }


def measure_deletion(config: BenchmarkConfig, model, name: str, deletion) -> dict:
    """Single-deletion ρ of every method (FunnyBirds): per image, the rank correlation of each block's
    attribution with the drop of the explained logit when the block is removed; mean with interval."""
    from two4two.explain.attribution import AttributionError
    from two4two.explain.attribution_scores import SINGLE_BLOCKS, class_logit, part_masses, removal_drops, single_deletion
    from two4two.intervals import mean_interval

    logits = deletion.logits(model)
    targets = (logits > 0).astype(np.int64)
    removals = {block: deletion.removal(block) for block in SINGLE_BLOCKS}
    drops = removal_drops(model, removals, [p.id for p in deletion.params], class_logit(logits, targets), targets)
    drops = np.stack([drops[block] for block in SINGLE_BLOCKS], axis=1)
    rho, reasons = {}, {}
    for method in config.methods:
        try:
            maps = _method(method, model, name).attribute(deletion.images, targets, deletion.masks)
        except AttributionError as exc:
            reasons[method] = str(exc)
            continue
        values = single_deletion(part_masses(maps, deletion.masks, SINGLE_BLOCKS), drops)
        rho[method] = asdict(mean_interval(values, config.resamples, 0))
    return {"name": name, "accuracy": float(((logits > 0) == deletion.true_labels).mean()),
            "mean_abs_drop": float(np.abs(drops).mean()), "single_deletion": rho, "not_applicable": reasons}


# ---- across the sweep -----------------------------------------------------------------------


def detection_auc(shares: np.ndarray, relies: np.ndarray) -> float:
    """ROC AUC of the share separating the models that rely on the bias from those that do not
    (ties count a half); NaN when every model is on one side of the threshold."""
    from scipy import stats

    if relies.all() or not relies.any():
        return float("nan")
    return float(stats.mannwhitneyu(shares[relies], shares[~relies]).statistic / (relies.sum() * (~relies).sum()))


def relying(config: BenchmarkConfig, records: list[dict]) -> np.ndarray:
    """Which of an architecture's models (one per strength) rely on the bias: flip % above
    `reliance_threshold`, or with "unbiased", a flip % whose 95 % interval lies wholly above that of
    the same architecture at the first strength. A weak model changes some decisions whatever part
    of the image is redrawn, and how many differs by architecture; this rule calibrates for it."""
    flips = [r["flip_percent"] for r in records]
    if config.reliance_threshold == UNBIASED:
        return np.array([f["low"] > flips[0]["high"] for f in flips])
    return np.array([f["value"] > config.reliance_threshold for f in flips])


def reliance_rule(config: BenchmarkConfig) -> str:
    if config.reliance_threshold == UNBIASED:
        return (f"a model relies on the bias when its flip % interval lies above that of its architecture's model "
                f"at strength {config.strengths[0]:g}")
    return f"a model relies on the bias above {config.reliance_threshold:g} %"


def sweep_scores(config: BenchmarkConfig, arch: str, measures: dict[str, dict], seed: int = 0) -> dict:
    """Per method, for one architecture: ρ(share, reliance) across the strengths and the detection
    AUC, each with a 95 % interval from resampling the explained test images (the same images for
    every model, so map noise and the reliance's own noise both enter), and each model's mean share."""
    records = [measures[f"{arch}-{k}"] for k in range(len(config.strengths))]
    flips = np.array([r["flips"] for r in records])  # models × images
    relies = relying(config, records)
    reliance = spearman(np.array(config.strengths), np.array([r["flip_percent"]["value"] for r in records]))
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, flips.shape[1], flips.shape[1]) for _ in range(config.resamples)]
    methods = {}
    for method in config.methods:
        missing = [r["not_applicable"][method] for r in records if method in r["not_applicable"]]
        if missing:
            methods[method] = {"not_applicable": missing[0]}
            continue
        shares = np.array([r["shares"][method] for r in records])  # models × images

        def both(i):
            share = np.nanmean(shares[:, i], axis=1)
            return spearman(share, np.nanmean(flips[:, i], axis=1)), detection_auc(share, relies)

        (rho, auc), boot = both(slice(None)), np.array([both(i) for i in draws])
        methods[method] = {"share": np.nanmean(shares, axis=1).tolist(),
                           "rho": asdict(Interval(rho, *percentile_interval(boot[:, 0]))),
                           "auc": asdict(Interval(auc, *percentile_interval(boot[:, 1])))}
    return {"reliance_vs_strength_rho": reliance, "relies": relies.tolist(), "methods": methods}


def _cell(interval: dict) -> str:
    return Interval(**interval).fmt(2)


def leaderboard_markdown(config: BenchmarkConfig, measures: dict[str, dict], scores: dict[str, dict],
                         deletion: dict[str, dict] | None = None, out: Path | None = None) -> str:
    from two4two.explain.attribution import LABELS
    from two4two.parameters import ATTRIBUTES

    label = ATTRIBUTES[config.attribute].label
    lines = [f"# Bias benchmark: {config.name}", "",
             f"The bias: {label} made predictive of the class at strengths {', '.join(f'{s:g}' for s in config.strengths)} "
             f"(0: absent; 1: {label} alone separates the classes). Every model is measured and explained on one test "
             "split drawn without the bias. *Reliance*: % of decisions flipped when the attribute is redrawn "
             f"({reliance_rule(config)}). *Share*: the part of a method's |map| "
             f"on the {config.region} pixels. *ρ*: Spearman of share and reliance across the strengths; *AUC*: how well the "
             "share tells relying models from the others. Intervals: 95 %, resampling the explained test images.", "",
             "## Models", "",
             markdown_table(("architecture", "strength", "test accuracy", "reliance: flip %", f"R² of {label}", "R² of the legs"),
                            ((arch, f"{config.strengths[k]:g}", f"{r['test_accuracy']:.3f}", _cell(r["flip_percent"]),
                              _cell(r["r_squared"]), _cell(r["legs_r_squared"]))
                             for arch, k in config.model_names() for r in [measures[f"{arch}-{k}"]]))]

    def leaderboard_cells(method: str) -> list[str]:
        cells = []
        for arch in config.architectures:
            m = scores[arch]["methods"][method]
            cells += [f"not applicable: {m['not_applicable'].split(':', 1)[-1].strip()}", "—"] if "not_applicable" in m \
                else [_cell(m["rho"]), _cell(m["auc"])]
        return cells

    lines += ["", "Spearman ρ of reliance and strength: "
              + ", ".join(f"{arch} {scores[arch]['reliance_vs_strength_rho']:.2f}" for arch in config.architectures)
              + " (the sweep does its job where it is near 1).", "", "## Leaderboard", "",
              markdown_table(("method", *(f"{arch}: {what}" for arch in config.architectures for what in ("ρ", "AUC"))),
                             ([LABELS.get(method, method), *leaderboard_cells(method)] for method in config.methods))]
    if deletion:
        (plain, _), (removal, _) = config.deletion_models()
        lines += ["", f"## Single deletion with and without in-domain part removal ({config.removal_arch}, no bias)", "",
                  f"Spearman ρ per image between each block's attribution and the drop of the explained logit when that "
                  f"block is removed (FunnyBirds' single deletion; 8 blocks, {config.images} test images), for the model "
                  f"trained as usual and the one trained with one block removed from {config.removal_rate:.0%} of its "
                  "images (so that images without a block are in its domain). Test accuracy: "
                  f"{deletion[plain]['accuracy']:.3f} and {deletion[removal]['accuracy']:.3f}; mean |drop| "
                  f"{deletion[plain]['mean_abs_drop']:.3f} and {deletion[removal]['mean_abs_drop']:.3f}.", "",
                  markdown_table(("method", "without", "with in-domain removal"),
                                 ([LABELS.get(method, method), *(_cell(deletion[m]["single_deletion"][method])
                                                                 if method in deletion[m]["single_deletion"] else "not applicable"
                                                                 for m in (plain, removal))] for method in config.methods))]
    if out is not None:
        from two4two.explain.attribution_scores import AttributionScores

        for arch in config.architectures:
            kept = out / "measures" / f"{arch}-{len(config.strengths) - 1}" / "scores"
            if (kept / "attribution_scores.csv").is_file():
                lines += ["", f"## Single-model scores: {arch} at the strongest bias ({config.strengths[-1]:g})", "",
                          "value [95 % interval] (rank; 1 = best); ↓: lower is better.", "",
                          AttributionScores.read(kept).format_table()]
    return "\n".join(lines) + "\n"


def plot_sweep(config: BenchmarkConfig, arch: str, measures: dict[str, dict], scores: dict, path: Path) -> Path:
    """Each method's share against the measured reliance across the strengths, for one architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from two4two.explain.attribution import CONTROLS, LABELS
    from two4two.io import atomic_write_bytes
    from two4two.plotting import figure_png

    from two4two.parameters import ATTRIBUTES

    reliance = [measures[f"{arch}-{k}"]["flip_percent"]["value"] for k in range(len(config.strengths))]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (method, m) in enumerate(scores[arch]["methods"].items()):
        if "share" in m:
            control = method in CONTROLS
            ax.plot(reliance, m["share"], color=plt.cm.tab20(i % 20), marker="s" if control else "o",
                    linestyle="--" if control else "-", label=f"{LABELS.get(method, method)} (ρ {_cell(m['rho'])})")
        else:
            ax.plot([], [], " ", label=f"{LABELS.get(method, method)}: not applicable")
    records = [measures[f"{arch}-{k}"] for k in range(len(config.strengths))]
    threshold = records[0]["flip_percent"]["high"] if config.reliance_threshold == UNBIASED else config.reliance_threshold
    ax.axvline(threshold, color="grey", linewidth=0.8)
    ax.set_xlabel(f"measured reliance on the {ATTRIBUTES[config.attribute].label}: flip %")
    ax.set_ylabel(f"share of |map| on the {config.region}")
    fig.suptitle(f"{arch}: does the map follow the model? (strengths {', '.join(f'{s:g}' for s in config.strengths)})", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return atomic_write_bytes(path, figure_png(fig))


def leaderboard_html(markdown: str, pngs: list[Path]) -> str:
    """The leaderboard as one self-contained page (tables from the Markdown, the plots inline)."""
    import base64
    import html

    body, table = [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-")]
            cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:]) + "</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    body += [f'<img alt="{html.escape(p.stem)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
             for p in pngs]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>two4two bias benchmark</title><style>{style}</style></head>" \
           f"<body>{''.join(body)}</body></html>\n"


# ---- the run --------------------------------------------------------------------------------


def _measured(raw: dict) -> dict:
    """The config without what only the scores read (the reliance threshold): what DIR's measures depend on."""
    return {**raw, "bias": {k: v for k, v in raw.get("bias", {}).items() if k != "reliance_threshold"}}


def _claim(out: Path, config: BenchmarkConfig) -> None:
    """DIR keeps one config's run: a stopped run of the same config continues (or, with another
    reliance threshold, is scored again), another config is refused."""
    from two4two.io import atomic_write_json

    kept = out / "benchmark.json"
    if kept.exists() and _measured(json.loads(kept.read_text())) != _measured(config.raw):
        raise Two4TwoError(f"{out}: holds a benchmark run of another config ({kept}); choose another output directory")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(kept, config.raw)


def _trained(model_conf) -> Path | None:
    """The model's checkpoint when its training ran every epoch, else None."""
    history = model_conf.output_dir / "history.json"
    finished = history.exists() and len(json.loads(history.read_text())) == model_conf.training.epochs
    return model_conf.output_dir / "model.pt" if finished else None


def run_benchmark(config: BenchmarkConfig, out: str | Path, progress: bool = True, **pool_options) -> dict[str, Path]:
    """Every stage in order, skipping what DIR already holds; returns the files written."""
    import time

    from tqdm import tqdm

    from two4two.dataset import ensure, read_split
    from two4two.explain.attribution_scores import SINGLE_BLOCKS
    from two4two.io import atomic_write_json, atomic_write_text
    from two4two.models.training import load_classifier, train_model
    from two4two.split import Split

    out = Path(out)
    _claim(out, config)
    last = len(config.strengths) - 1
    jobs = [(f"{arch}-{k}", arch, k, False, out / "measures" / f"{arch}-{k}" / "measures.json") for arch, k in config.model_names()]
    jobs += [(name, config.removal_arch, 0, removal, out / "measures" / "deletion" / f"{name}.json")
             for name, removal in config.deletion_models()]
    pending = [job for job in jobs if not job[-1].exists()]
    start = time.perf_counter()
    if pending:  # render only what a missing measure needs
        test_root = ensure(dataset_config(config, out, None), progress=progress, **pool_options,
                           removals={DELETION_SPLIT: SINGLE_BLOCKS} if config.removal_arch else None)
        for k, removal in dict.fromkeys((k, removal) for _, _, k, removal, _ in pending):
            ensure(dataset_config(config, out, k, removal), progress=progress, **pool_options)
        test = Split(test_root, "test")
    seconds = {"data": time.perf_counter() - start}
    measures, deletion = {}, {}
    for name, arch, k, removal, done in tqdm(jobs, desc="models", unit="model", disable=not progress):
        if not done.exists():
            model_conf = model_config(config, out, arch, k, removal)
            start = time.perf_counter()
            checkpoint = _trained(model_conf) or train_model(model_conf, progress, resume=True)
            trained = time.perf_counter()
            model = load_classifier(checkpoint)
            if done.parent.name == "deletion":
                record = measure_deletion(config, model, name, Split(test_root, DELETION_SPLIT))
            else:
                record = measure_model(config, model, name, test, read_split(model_conf.data, model_conf.training.train_split),
                                       done.parent, scores=k == last)
            atomic_write_json(done, {**record, "arch": arch, "strength": config.strengths[k], "in_domain_removal": removal,
                                     "train_seconds": trained - start, "measure_seconds": time.perf_counter() - trained})
        (deletion if done.parent.name == "deletion" else measures)[name] = json.loads(done.read_text())
    start = time.perf_counter()
    scores = {arch: sweep_scores(config, arch, measures) for arch in config.architectures}
    markdown = leaderboard_markdown(config, measures, scores, deletion, out)
    pngs = [plot_sweep(config, arch, measures, scores, out / f"{arch}.png") for arch in config.architectures]
    models = {name: {k: v for k, v in r.items() if k not in ("flips", "shares")} for name, r in measures.items()}
    seconds["scores and leaderboard"] = time.perf_counter() - start  # (a resumed run times only its own data stage)
    results = {"config": config.raw, "models": models, "scores": scores, "deletion": deletion, "seconds": seconds}
    return {"results": atomic_write_json(out / "results.json", results),
            "markdown": atomic_write_text(out / "leaderboard.md", markdown),
            "html": atomic_write_text(out / "leaderboard.html", leaderboard_html(markdown, pngs)),
            **{arch: png for arch, png in zip(config.architectures, pngs)}}
