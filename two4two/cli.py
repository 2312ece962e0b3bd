"""The `two4two` command: one thin entry point over the library.

User errors (bad config, bad path, out-of-range value) print one line and exit 2;
tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from two4two.errors import Two4TwoError


def _output_file(output: str | None, name: str, default_dir: Path | None = None) -> Path:
    """`-o` names a directory and the command writes `name` inside it. An `-o` naming the file
    itself (ending like `name`: the previous release's form) still works, with a line saying so."""
    if output is None:
        return (default_dir or Path(".")) / name
    out = Path(output)
    if out.suffix and out.suffix == Path(name).suffix and not out.is_dir():
        print(f"two4two: -o {output}: -o now names a directory ({name} is written inside it); a file name is "
              "taken as before until the next release", file=sys.stderr)
        return out
    return out / name


@contextlib.contextmanager
def _writing_into(directory: Path):
    """Create the output directory for the command's work; a command that fails leaves no empty one behind."""
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        yield directory
    except BaseException:
        if created and not any(directory.iterdir()):
            directory.rmdir()
        raise


def _cmd_sample(args: argparse.Namespace) -> None:
    from two4two.config import load_config
    from two4two.parameters import write_jsonl

    config = load_config(args.config)
    split = args.split or next(iter(config.splits))
    batch = config.sample_split(split, n=args.n, seed=args.seed)
    out = _output_file(args.output, f"{split}.jsonl")
    with _writing_into(out.parent):
        count = write_jsonl(out, batch)
    print(f"wrote {count} parameter sets of split {split!r} to {out}")


def _cmd_configs(args: argparse.Namespace) -> None:
    from two4two.config import builtin_configs, config_file, read_yaml

    if args.name:
        print(config_file(args.name).read_text(encoding="utf-8"), end="")
        return
    if args.action == "show":
        raise Two4TwoError("configs show: name a config; `two4two configs` lists them")
    rows = []
    for name, path in builtin_configs().items():
        raw, text = read_yaml(path), path.read_text(encoding="utf-8")
        kind = raw.get("kind") or next(k for k, keys in (("dataset", "splits"), ("rules", "rules"), ("study", "model")) if keys in raw)
        about = next((line.lstrip("# ").rstrip() for line in text.splitlines() if line.startswith("#")), "")
        rows.append((name, kind, about if len(about) <= 90 else about[:89] + "…"))
    width = max(len(name) for name, _, _ in rows)
    for name, kind, about in rows:
        print(f"{name:<{width}}  {kind:<10}  {about}")
    print(f"\n{len(rows)} built-in configs; `two4two configs show NAME` prints one, "
          "`two4two render NAME` renders a dataset config, a path works wherever a name does")


def _cmd_export(args: argparse.Namespace) -> None:
    from two4two.dataset.export import export_dataset

    record = export_dataset(args.dataset, args.output, args.format, args.split, args.shard_size)
    splits = json.loads(record.read_text())["splits"]
    for split, done in splits.items():
        print(f"{split}: {done['samples']} samples in {len(done['files'])} file(s)")
    print(f"export: {record}")


def _cmd_render(args: argparse.Namespace) -> None:
    from two4two.config import load_config
    from two4two.dataset import plan_config, run_render_job, write_overview

    config = load_config(args.config)
    job = plan_config(config, Path(args.output) if args.output else None)
    manifest = run_render_job(job, resume=args.resume, overwrite=args.overwrite, repair=args.repair, **_pool_args(args))
    _report(job.root, manifest)
    first = next(iter(job.splits))
    if manifest["counts"].get(first):
        print(f"overview: {write_overview(job.root, first)}")


def _cmd_render_params(args: argparse.Namespace) -> None:
    from two4two.dataset import plan_params_file, run_render_job
    from two4two.render import RenderSettings

    settings = RenderSettings(**{f.name: getattr(args, f.name) for f in fields(RenderSettings)})
    job = plan_params_file(Path(args.params), Path(args.output), args.split, settings)
    manifest = run_render_job(job, resume=args.resume, overwrite=args.overwrite, repair=args.repair, **_pool_args(args))
    _report(job.root, manifest)


def _render_setting_options(p: argparse.ArgumentParser) -> None:
    """One option per RenderSettings field (--samples, --denoise, …), checked at parse time as the field declares."""
    from two4two.render import RenderSettings
    from two4two.schema import Fields

    def parse(setting):
        def value(text: str):
            raw = text if "choices" in setting.metadata else (int(text) if setting.type == "int" else float(text))
            return Fields({setting.name: raw}, "", error=argparse.ArgumentTypeError).setting(setting)
        value.__name__ = setting.type  # argparse names the type when the text does not convert
        return value

    for setting in fields(RenderSettings):
        flag, help_text = "--" + setting.name.replace("_", "-"), f"{setting.metadata['help']} (default: {setting.default})"
        if setting.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=setting.default, help=help_text)
        else:
            p.add_argument(flag, type=parse(setting), default=setting.default, metavar=setting.name.upper(), help=help_text)


def _cmd_verify(args: argparse.Namespace) -> int:
    from two4two.dataset.verify import verify

    report = verify(args.dataset, workers=args.hash_threads)
    print(report.format(limit=args.limit))
    if not report.ok:
        print(f"repair: two4two render CONFIG -o {args.dataset} --resume --repair", file=sys.stderr)
    return 0 if report.ok else 1


def _pool_args(args: argparse.Namespace) -> dict:
    """Where images are rendered (render, and missing data of train, evaluate importance and study bundle):
    pool options from the command line; --address only reaches the Ray backend."""
    options = dict(workers=args.workers, threads=args.threads, backend=args.backend)
    if args.address is not None:
        options["address"] = args.address
    return options


def _report(root: Path, manifest: dict) -> None:
    counts = ", ".join(f"{s}: {n}" for s, n in manifest["counts"].items())
    print(f"{root}: {manifest['status']} ({counts})")


def _cmd_train(args: argparse.Namespace) -> None:
    from two4two.layout import has_split
    from two4two.models.training import load_train_config, train_model

    config = load_train_config(args.config)
    if config.dataset_config is not None and not has_split(config.data, config.training.train_split):
        from two4two.dataset import ensure

        ensure(config.dataset_config, output_dir=config.data, **_pool_args(args))
    path = train_model(config, resume=args.resume)
    print(f"checkpoint: {path}")


def _cmd_importance(args: argparse.Namespace) -> None:
    from two4two.importance import Importance, available_interventions
    from two4two.models.training import checkpoint_dir, load_classifier, training_split_of
    from two4two.parameters import MEASURED_ATTRIBUTES
    from two4two.split import Split

    model = load_classifier(args.model)
    data = Path(args.data)
    if data.suffix in (".yaml", ".yml") or args.create_interventions:
        # A config: render its dataset (or finish it); then any missing interventions.
        from two4two.dataset import ensure

        root = ensure(data, **_pool_args(args)) if data.suffix in (".yaml", ".yml") else data
        attributes = args.attributes or available_interventions(root, args.split) or list(MEASURED_ATTRIBUTES)
        data = ensure(root, {args.split: attributes}, **_pool_args(args))
    model_dir = checkpoint_dir(args.model)
    out_dir = Path(args.output) if args.output else model_dir / "importance"
    models = [(model_dir.name or "model", model, "importance")]
    if args.random_init:
        import torch

        from two4two.models.training import random_init_like

        torch.manual_seed(args.seed)
        models.append(("random-init baseline", random_init_like(args.model), "importance_random_init"))
    training_params = training_split_of(args.model)
    split = Split(data, args.split, progress=True)
    for name, m, stem in models:
        result = Importance(m, args.attributes, n_resamples=args.resamples, model_name=name, training_params=training_params).evaluate(split)
        print(result.format_table())
        paths = result.write(out_dir, stem)
        print("written: " + ", ".join(str(p) for p in paths.values()) + "\n")


@dataclass(frozen=True)
class _ExplainCommand:
    """One `two4two explain NAME` grid command: how to build its explainer, what to print (options: _explain_options)."""

    help: str
    model_help: str
    build: Callable[[Any, argparse.Namespace], Any]  # (model, args) -> explainer with .explain(split, seed)
    report: Callable[[Any, dict, argparse.Namespace], str]  # (explanation, saved paths, args) -> text


def _counterfactuals(model, args):
    from two4two.explain.counterfactual import QUINTILE_CENTRES, Counterfactuals, require_invertible, spanning_quantiles

    require_invertible(model, f"model {args.model}")
    quantiles = spanning_quantiles(args.coverage, args.columns) if args.coverage is not None else (args.quantiles or QUINTILE_CENTRES)
    return Counterfactuals(model, rows=args.rows, quantiles=quantiles)


def _counterfactuals_report(grid, paths, args) -> str:
    error = abs(grid.achieved_logits - grid.targets[None]).max()
    return (f"counterfactual grid ({args.rows} images × {len(grid.targets)} target logits): {paths['png']}, ids and logits: {paths['json']}\n"
            f"largest |logit of the saved 8-bit image − target|: {error:.3f}")


def _baseline(model, args):
    from two4two.explain.baseline import QUINTILE_LABELS, Baseline

    return Baseline(model, rows=args.rows, labels=args.labels or QUINTILE_LABELS)


def _baseline_report(grid, paths, args) -> str:
    edges = ", ".join(f"{e:+.2f}" for e in grid.edges)
    return f"baseline grid ({args.rows} rows × {len(grid.labels)} columns; column logit edges {edges}): {paths['png']}, ids and logits: {paths['json']}"


def _concepts(model, args):
    from two4two.explain.concepts import Concepts

    return Concepts(model, images=args.images, components=args.components, keep=args.keep, examples=args.examples, progress=True)


def _concepts_report(explanation, paths, args) -> str:
    return (explanation.format_table() + "\n"
            + f"concepts ({args.keep} × 2 rows of {args.examples} images): {paths['png']}, r, p and example ids: {paths['json']}")


EXPLAIN_COMMANDS = {
    "counterfactuals": _ExplainCommand(
        "INN counterfactual interpolation grid (rows: images, columns: target logits)",
        "INN checkpoint (model.pt or its directory)", _counterfactuals, _counterfactuals_report),
    "baseline": _ExplainCommand(
        "the paper's baseline: example images in columns of equal shares of the logits",
        "classifier checkpoint (model.pt or its directory)", _baseline, _baseline_report),
    "concepts": _ExplainCommand(
        "concepts found by factorising an 8×8 layer (Zhang et al. 2021), two rows per concept",
        "small_cnn or INN checkpoint (model.pt or its directory)", _concepts, _concepts_report),
}


def _cmd_explain(name: str, args: argparse.Namespace) -> None:
    """Every explainer the same way: build it from its options, explain a split, save, report."""
    from two4two.models.training import load_classifier
    from two4two.split import Split

    command = EXPLAIN_COMMANDS[name]
    explainer = command.build(load_classifier(args.model), args)
    explanation = explainer.explain(Split(args.data, args.split, progress=True), seed=args.seed)
    out = _output_file(args.output, f"{name}.png")
    with _writing_into(out.parent):
        paths = explanation.save(out)
    print(command.report(explanation, paths, args))


def _cmd_evaluate_audit(args: argparse.Namespace) -> None:
    from two4two.explain.audit import CounterfactualAudit
    from two4two.explain.counterfactual import require_invertible
    from two4two.models.training import checkpoint_dir, load_classifier, load_observer
    from two4two.split import Split

    inn = require_invertible(load_classifier(args.inn), f"inn {args.inn}")
    audit = CounterfactualAudit(inn, load_observer(args.observer), images=args.images, steps=args.steps, coverage=args.coverage,
                                progress=True)
    result = audit.evaluate(Split(args.data, args.split), seed=args.seed)
    print(result.format_table())
    out = Path(args.output) if args.output else checkpoint_dir(args.inn) / "audit"
    paths = result.write(out)
    print("written: " + ", ".join(str(p) for p in paths.values()))


def _cmd_explain_attributions(args: argparse.Namespace) -> None:
    from two4two.explain.attribution import Attributions
    from two4two.models.training import load_classifier
    from two4two.split import Split

    explainer = Attributions(load_classifier(args.model), args.methods, images=args.images, target=args.target, progress=True,
                             batch_size=args.batch_size, baseline=args.reference_input)
    maps = explainer.explain(Split(args.data, args.split, progress=True), seed=args.seed)
    paths = maps.save(args.output, rows=args.rows)
    for method, seconds in maps.seconds.items():
        print(f"{method:22s} {seconds:7.1f} s  ({len(maps.ids) / max(seconds, 1e-9):8.1f} images/s)")
    print("written: " + ", ".join(str(p) for p in paths.values()))


def _cmd_evaluate_attributions(args: argparse.Namespace) -> None:
    from two4two.animal import BLOCK_GROUPS, BLOCK_NAMES
    from two4two.dataset import ensure
    from two4two.explain.attribution import load_maps
    from two4two.explain.attribution_scores import AttributionEvaluation
    from two4two.importance import available_interventions
    from two4two.models.training import load_classifier
    from two4two.split import Split

    maps = load_maps(args.maps)
    parts = [] if args.no_removals else [*BLOCK_GROUPS, *BLOCK_NAMES]
    root = ensure(Path(args.data), removals={args.split: parts}, **_pool_args(args))
    split = Split(root, args.split, progress=True)
    contrast = tuple(load_classifier(c) for c in args.contrast) if args.contrast else None
    evaluation = AttributionEvaluation(load_classifier(args.model), n_resamples=args.resamples, sanity_images=args.sanity_images,
                                       contrast=contrast, progress=True, seed=args.seed)
    scores = evaluation.evaluate(split, maps, {p: split.removal(p) for p in parts}, available_interventions(root, args.split))
    print(scores.format_table())
    print()
    print(scores.format_correlation())
    print("written: " + ", ".join(str(p) for p in scores.write(args.output).values()))


def _cmd_evaluate_faithfulness(args: argparse.Namespace) -> None:
    from two4two.explain.attribution import load_maps
    from two4two.explain.attribution_scores import AttributionScores
    from two4two.explain.faithfulness import Faithfulness
    from two4two.models.training import load_classifier
    from two4two.split import Split

    maps = load_maps(args.maps)
    scores = AttributionScores.read(args.scores) if args.scores else None  # refused before the long work, not after
    evaluation = Faithfulness(load_classifier(args.model), args.percentages, args.imputation, reveal_levels=args.reveal_levels,
                              reveal_fill=args.reveal_fill, progress=True)
    result = evaluation.evaluate(Split(args.data, args.split, progress=True), maps, seed=args.seed)
    print(result.format_table())
    paths = result.write(args.output)
    if scores is not None:
        merged = scores.merged(result.score_intervals(args.resamples, args.seed))
        paths.update({f"scores_{k}": v for k, v in merged.write(args.output).items()})
        print()
        print(merged.format_correlation())
    print("written: " + ", ".join(str(p) for p in paths.values()))


def _cmd_explore(args: argparse.Namespace) -> None:
    from two4two.explorer.app import serve
    from two4two.explorer.session import ExplorerSession
    from two4two.models.training import load_classifier
    from two4two.split import Split

    session = ExplorerSession(load_classifier(args.model), Split(args.data, args.split, progress=True), args.maps)
    serve(session, args.host, args.port,
          ready=lambda: print(f"explorer of {session.n} images on http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True))


def _cmd_evaluate_observer(args: argparse.Namespace) -> None:
    from two4two.io import atomic_write_json, atomic_write_text
    from two4two.models.observer import ObserverCheck, attribute_mse_table
    from two4two.models.training import checkpoint_dir, load_observer
    from two4two.split import Split

    split = Split(args.data, args.split)
    record = ObserverCheck(load_observer(args.observer)).evaluate(split)
    text = f"observer on {args.data}/{args.split} ({len(split)} images): label accuracy {record['label_accuracy']:.3f}\n" + attribute_mse_table(record)
    print(text)
    out = Path(args.output) if args.output else checkpoint_dir(args.observer) / "evaluation"  # the writers create it
    written = [atomic_write_text(out / f"observer_{args.split}.md", text + "\n"), atomic_write_json(out / f"observer_{args.split}.json", record)]
    print("written: " + ", ".join(str(p) for p in written))


def _load_for_describe(target: Path, split: str | None, n: int | None):
    """Parameters to describe and a default place for the plot, from any accepted input."""
    from two4two.config import builtin_configs, load_config
    from two4two.layout import INTERVENTION_SEPARATOR, PARAMETERS, parameters_path, split_names
    from two4two.parameters import read_jsonl

    if target.is_dir():
        files = [parameters_path(target, name) for name in split_names(target)
                 if INTERVENTION_SEPARATOR not in name and (split is None or name == split)]
        if not files:
            raise Two4TwoError(f"{target}: no SPLIT/{PARAMETERS} found in this directory")
        params = [p for f in files for p in read_jsonl(f)]
        return params, target / "bias_report.png", f"{target} ({', '.join(f.parent.name for f in files)})"
    if target.suffix in (".jsonl", ".json"):
        return read_jsonl(target), target.with_suffix(".bias.png"), str(target)
    if target.suffix in (".yaml", ".yml") or (not target.exists() and target.name in builtin_configs()):
        config = load_config(target)
        split = split or next(iter(config.splits))
        count = n if n is not None else min(config.split(split).n, 50_000)
        batch = config.sample_split(split, n=count)
        return batch, Path(f"{config.name}_{split}_bias.png"), f"{target} split {split!r}"
    raise Two4TwoError(f"{target}: expected a config (.yaml or a built-in's name), a parameters file (.jsonl) or a dataset directory")


def _cmd_describe(args: argparse.Namespace) -> None:
    from two4two.bias_report import count_in_band, describe, format_table, plot_joint_distributions

    params, default_plot, what = _load_for_describe(Path(args.target), args.split, args.n)
    if len(params) == 0:
        raise Two4TwoError(f"{what}: no parameters to describe")
    print(f"{what}:")
    print(format_table(describe(params), len(params), count_in_band(params)))
    plot = plot_joint_distributions(params, _output_file(args.output, default_plot.name, default_plot.parent))
    print(f"joint distributions: {plot}")


def _cmd_benchmark(args: argparse.Namespace) -> None:
    from two4two.benchmark import load_benchmark_config, run_benchmark

    paths = run_benchmark(load_benchmark_config(args.config), args.output, **_pool_args(args))
    print(paths["markdown"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))


def _cmd_study_analyze(args: argparse.Namespace) -> None:
    from two4two.study.bundle import load_bundle
    from two4two.study.pipeline import analyze

    source = Path(args.responses)
    analysis = analyze(source, load_bundle(args.bundle) if args.bundle else None, rules=args.rules, expect=dict(args.expect or {}) or None,
                       control_condition=args.control_condition, reference_attribute=args.reference_attribute,
                       scores=args.scores, keep_too_fast=args.keep_too_fast)
    paths = analysis.write(Path(args.output) if args.output else source.with_name(f"{source.stem}_analysis"))
    print(analysis.markdown())
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def _cmd_study_bundle(args: argparse.Namespace) -> None:
    from two4two.study.pipeline import STUDIES, export_bundle, load_config, paradigm_of

    config = load_config(args.config)
    study = STUDIES[paradigm_of(config)]
    needed = study.interventions(config) if args.create_interventions else {}
    if needed:
        from two4two.dataset import ensure

        ensure(config.data, needed, **_pool_args(args))
    bundle = export_bundle(config, args.output, overwrite=args.overwrite)
    print("\n".join(study.describe(bundle)))
    print(f"study bundle: {bundle.root / 'manifest.json'}")


def _cmd_study_report(args: argparse.Namespace) -> None:
    from two4two.study.report import read_human, side_by_side
    from two4two.study.trial_analysis import read_scores

    report = side_by_side(read_scores(args.scores), [read_human(d) for d in args.analysis], args.score_names,
                          resamples=args.resamples, seed=args.seed)
    paths = report.write(args.output)
    print(report.markdown())
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def _cmd_study_simulate(args: argparse.Namespace) -> None:
    from two4two.io import atomic_write_text
    from two4two.study.bundle import load_bundle
    from two4two.study.pipeline import simulate

    out = _output_file(args.output, "responses.csv")
    bundle = load_bundle(args.bundle) if args.bundle else None
    simulated = simulate(bundle, args.per_condition, seed=args.seed, paradigm=args.paradigm, effect=dict(args.effect or {}) or None,
                         too_fast_share=args.too_fast_share)
    with _writing_into(out.parent):
        atomic_write_text(out, simulated.csv)
    print(f"wrote {simulated.answers} synthetic {bundle.paradigm if bundle else 'attribute_relevance'} answers "
          f"of {simulated.participants} participants to {out}")


def _cmd_study_serve(args: argparse.Namespace) -> None:
    from two4two.study.app import serve
    from two4two.study.bundle import load_bundle
    from two4two.study.storage import Storage

    bundle = load_bundle(args.bundle)
    Storage(args.db, bundle).close()  # refuse another bundle's database before printing the address

    def ready() -> None:  # the database's lock is held: this server is the only one
        print(f"study {bundle.title!r} ({', '.join(bundle.condition_names)}): http://{args.host}:{args.port}/  responses: {args.db}")
        print("stop with Ctrl+C; then: two4two study responses --db DB --bundle BUNDLE -o responses.csv", flush=True)

    serve(bundle, args.db, host=args.host, port=args.port, threads=args.request_threads, ready=ready)
    print(f"stopped; the responses are in {args.db}")


def _cmd_study_responses(args: argparse.Namespace) -> None:
    from two4two.study.bundle import load_bundle
    from two4two.study.pipeline import export_responses

    out = _output_file(args.output, "responses.csv")
    with _writing_into(out.parent):
        responses, report_path, report = export_responses(args.db, load_bundle(args.bundle), out)
    status = {s: sum(r["status"] == s for r in report) for s in ("completed", "excluded", "active")}
    print(f"wrote the answers of {status['completed']} completed participants to {responses}")
    print(f"all {len(report)} participants ({status['excluded']} excluded, {status['active']} unfinished): {report_path}")


# ---- the command line, declared as data ------------------------------------------------
#
# Every command is one row of _commands(): where it sits, its help, the function it runs and
# its options. An option several commands take is declared once below (one name, one meaning).
# Values are checked while the command line is parsed (a one-line error, exit 2). A command or
# option renamed in this release keeps its old spelling for one release, with a line naming the
# new one (docs/changelog.md: "Renamed commands and options").


def _checked(name: str, convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str, quote: bool = True):
    """argparse type: convert(text), refused in one line unless ok(value): "expected EXPECTED, got TEXT"
    (`quote=False`: a converted value is shown bare, as integers are)."""
    def value(text: str):
        try:
            number = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(number):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {repr(text) if quote else number}")
        return number
    value.__name__ = name  # argparse names the type when the text does not convert
    return value


def _integer(low: int, meaning_of_zero: str = ""):
    """argparse type: an integer ≥ low (`meaning_of_zero`: what 0 means where 0 is allowed)."""
    return _checked("integer", int, lambda number: number >= low, f"an integer ≥ {low}{meaning_of_zero}", quote=False)


def _share(low_open: bool):
    """argparse type: a share in [0, 1] (or (0, 1] where 0 would mean nothing)."""
    return _checked("share", float, (lambda share: 0 < share <= 1) if low_open else (lambda share: 0 <= share <= 1),
                    f"a share in {'(0, 1]' if low_open else '[0, 1]'}")


_port = _checked("port", int, lambda number: 1 <= number <= 65535, "a port in 1–65535")
# a percentage of pixels removed or shown
_percent = _checked("percentage", float, lambda number: 0 < number < 100, "a percentage strictly between 0 and 100")


def _keyed(what: str, value_type: Callable[[str], Any], example: str):
    """argparse type: KEY=VALUE, returned as (KEY, VALUE)."""
    def value(text: str):
        key, sep, raw = text.partition("=")
        try:
            if sep and key:
                return key, value_type(raw)
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"expected {what}, e.g. {example}, got {text!r}")
    value.__name__ = what
    return value


def _direction(text: str) -> str:
    if text not in ("greater", "less"):
        raise ValueError(text)
    return text


def _delta(text: str) -> float:
    number = float(text)
    if not -1 <= number <= 1:
        raise ValueError(text)
    return number


@dataclass(frozen=True)
class _Option:
    flags: tuple[str, ...]
    spec: dict
    old: tuple[str, ...] = ()  # spellings of the previous release, still accepted

    def but(self, **changes) -> "_Option":
        return _Option(self.flags, {**self.spec, **changes}, self.old)


def _opt(*flags: str, old: tuple[str, ...] = (), **spec) -> _Option:
    return _Option(flags, spec, old)


class _OldSpelling(argparse.Action):
    """An option spelt as in the previous release: accepted, with a line naming the new spelling."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"two4two: {option_string} is now {self.new}; the old spelling goes in the next release", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def _add(p: argparse.ArgumentParser, option) -> None:
    if callable(option):  # adds a family of options itself (the render settings)
        option(p)
        return
    action = p.add_argument(*option.flags, **option.spec)
    for old in option.old:
        kept = {k: v for k, v in option.spec.items() if k in ("type", "choices", "nargs", "metavar")}
        if option.spec.get("action") == "store_true":
            kept["nargs"] = 0
        p.add_argument(old, dest=action.dest, action=_OldSpelling, new=option.flags[-1], default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS, **kept)


MODEL = _opt("--model", required=True, help="classifier checkpoint (model.pt or its directory)")
DATA = _opt("--data", required=True, help="rendered dataset directory")
SPLIT = _opt("--split", default="test", help="split (default test)")
SEED = _opt("--seed", type=_integer(0), default=0, help="seed (default 0)")
IMAGES = _opt("--images", type=_integer(1), help="images (default all)")
RESAMPLES = _opt("--resamples", type=_integer(1), default=1000, old=("--bootstrap",),
                 help="bootstrap resamples for the 95%% intervals (default 1000)")
OUTPUT = _opt("-o", "--output", required=True, help="output directory")
SCORES = _opt("--scores", help="directory written by `two4two evaluate attributions` (or its attribution_scores.csv)")
MAPS = _opt("--maps", required=True, help="directory written by `two4two explain attributions`")
CONFIG = _opt("config", help="dataset config (YAML, or a built-in's name: two4two configs)")
OBSERVER = _opt("--observer", required=True, help="observer checkpoint (model.pt or its directory)")
POOL = (
    _opt("--workers", type=_integer(1), help="render worker processes (default: one per core, at most 8)"),
    _opt("--threads", type=_integer(1), help="Cycles threads per render worker (default: cores / workers)"),
    _opt("--backend", choices=("local", "ray"), default="local",
         help="local worker processes (default) or Ray actors (pip install 'two4two[cluster]')"),
    _opt("--address", help="with --backend ray: join this Ray cluster (HOST:PORT or auto; default: start Ray locally)"),
)
RENDER_JOB = (
    *POOL,
    _opt("--resume", action="store_true", help="finish an interrupted render of the same config"),
    _opt("--overwrite", action="store_true", help="replace a different dataset in the output directory"),
    _opt("--repair", action="store_true", help="with --resume: first re-render the samples whose files `two4two verify` finds missing or damaged"),
)
CREATE_INTERVENTIONS = _opt("--create-interventions", action="store_true", help="render missing intervention splits first")


@dataclass(frozen=True)
class _Command:
    path: tuple[str, ...]
    help: str
    run: Callable[[argparse.Namespace], Any]
    options: tuple = ()
    old: tuple[str, ...] | None = None  # where the previous release had it


GROUPS = {
    "explain": "explanations of a trained model",
    "evaluate": "measure a model or its explanations against the generator's ground truth",
    "study": "the user study: bundles, the web app, responses, analysis",
}


def _explain_options(name: str) -> tuple:
    from two4two.explain.attribution import BASELINES, DEFAULT_METHODS, METHODS

    model_help = EXPLAIN_COMMANDS[name].model_help if name in EXPLAIN_COMMANDS else MODEL.spec["help"]
    common = (MODEL.but(help=model_help), DATA, SPLIT.but(help="split to draw images (and the logit distribution) from (default test)"))
    drawn = SEED.but(help="which images are drawn (default 0)")
    grid_output = OUTPUT.but(help=f"output directory ({name}.png, and {name}.json with the ids, logits and the rest)") \
        if name in EXPLAIN_COMMANDS else None  # attributions writes npz, json and png: its own help
    own = {
        "counterfactuals": (
            _opt("--rows", type=_integer(1), default=10, help="images, one per row (default 10)"),
            _opt("--quantiles", type=_share(True), nargs="+", help="column logits as quantiles of the split's logits (default: quintile centres 0.1 … 0.9)"),
            _opt("--coverage", type=_share(True), help="instead: columns evenly spanning this central share of the logits, e.g. 0.99"),
            _opt("--columns", type=_integer(2), default=5, help="columns with --coverage (default 5)"), drawn, grid_output),
        "baseline": (
            _opt("--rows", type=_integer(1), default=10, help="images per column (default 10)"),
            _opt("--labels", nargs="+", help="column labels, one per column (default: the five quintile labels)"), drawn, grid_output),
        "concepts": (
            IMAGES.but(default=500, help="images drawn from the split (default 500)"),
            _opt("--components", type=_integer(1), default=10, help="factorisation components (default 10)"),
            _opt("--keep", type=_integer(1), default=5, help="concepts kept: those most correlated with the logit (default 5)"),
            _opt("--examples", type=_integer(1), default=5, help="example images per row (default 5)"), drawn, grid_output),
        "attributions": (
            _opt("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS), metavar="METHOD",
                 help=f"methods: {', '.join(METHODS)} (default: all but the architecture-specific "
                      f"{', '.join(m for m in METHODS if m not in DEFAULT_METHODS)})"),
            IMAGES.but(help="explain the first N images of the split (default all)"),
            _opt("--target", choices=("predicted", "true"), default="predicted", help="class explained (default: the model's prediction)"),
            _opt("--batch-size", type=_integer(1), default=32, help="images per batch (default 32)"),
            _opt("--rows", type=_integer(1), default=6, help="images in the overlay grid (default 6)"),
            _opt("--reference-input", choices=("auto", *BASELINES), default="auto", old=("--baseline",),
                 help="the 'nothing here' input of integrated gradients, DeepLift and occlusion (default auto: grey for the INN, black otherwise)"),
            SEED.but(help="seed of the random control and SmoothGrad's noise (default 0)"),
            OUTPUT.but(help="output directory (attributions.npz, .json and .png)")),
    }[name]
    return common + own


def _commands() -> tuple[_Command, ...]:
    from two4two.explain.faithfulness import DEFAULT_PERCENTAGES, IMPUTATIONS, REVEAL_LEVELS
    from two4two.study.paradigms import PARADIGM_NAMES
    from two4two.study.report import DEFAULT_SCORES

    return (
        # data
        _Command(("sample",), "draw scene parameters from a config into a JSON Lines file", _cmd_sample, (
            CONFIG, _opt("--split", help="split to sample (default: the config's first split)"),
            _opt("--n", type=_integer(1), help="number of samples (default: the split's size)"),
            _opt("--seed", type=_integer(0), help="seed (default: the config's seed)"),
            OUTPUT.but(help="output directory (SPLIT.jsonl is written inside it)"))),
        _Command(("configs",), "list the built-in configs, or print one (`configs show NAME`) to start a variation from",
                 _cmd_configs, (_opt("action", nargs="?", choices=("show",), help="show: print the config NAME"),
                                _opt("name", nargs="?", help="a built-in config's name"))),
        _Command(("render",), "render every split of a config (images, masks, parameters)", _cmd_render, (
            CONFIG, _opt("-o", "--output", help="output directory (default: the config's output_dir)"), *RENDER_JOB)),
        _Command(("render-params",), "render exactly the parameters of a JSON Lines file", _cmd_render_params, (
            _opt("params", help="parameters file (.jsonl)"), OUTPUT,
            _opt("--split", help="split name inside the output (default: params)"), _render_setting_options, *RENDER_JOB)),
        _Command(("verify",), "check every file of a dataset against its recorded checksums (exit 1 on damage)", _cmd_verify, (
            _opt("dataset", help="rendered dataset directory"),
            _opt("--hash-threads", type=_integer(1), old=("--workers",), help="hashing threads (default: two per core, at most 8)"),
            _opt("--limit", type=_integer(1), default=50, help="paths listed per kind of damage (default 50)"))),
        _Command(("export",), "a dataset as Parquet (Hugging Face datasets, pyarrow) or WebDataset tar shards", _cmd_export, (
            _opt("dataset", help="rendered dataset directory"),
            OUTPUT.but(help="output directory (new or empty; export.json lists every file with its SHA-256)"),
            _opt("--format", required=True, choices=("parquet", "webdataset"), help="parquet or webdataset"),
            _opt("--split", nargs="+", help="splits to export (default: every split, interventions and removals included)"),
            _opt("--shard-size", type=_integer(1), default=1000, help="samples per file (default 1000)"))),
        _Command(("describe",), "bias report: how predictive each attribute is of the class", _cmd_describe, (
            _opt("target", help="a config (.yaml or a built-in's name), a parameters file (.jsonl) or a dataset directory"),
            _opt("--split", help="split to describe (config: default first split; dataset: default all)"),
            _opt("--n", type=_integer(1), help="samples to draw from a config (default: the split's size, at most 50 000)"),
            _opt("-o", "--output", help="output directory of the joint-distribution PNG (default: beside the input)"))),
        # models
        _Command(("train",), "train a model from a config (kind: classifier or observer)", _cmd_train, (
            _opt("config", help="model config (YAML)"),
            _opt("--resume", action="store_true", help="continue an interrupted training from its last finished epoch"), *POOL)),
        # explanations
        *(_Command(("explain", name), EXPLAIN_COMMANDS[name].help, functools.partial(_cmd_explain, name), _explain_options(name))
          for name in EXPLAIN_COMMANDS),
        _Command(("explain", "attributions"), "attribution maps of a split's images by each method (npz + overlay grid)",
                 _cmd_explain_attributions, _explain_options("attributions")),
        # evaluations
        _Command(("evaluate", "importance"), "ground-truth importance of each attribute for a trained model", _cmd_importance, (
            MODEL, DATA.but(help="rendered dataset directory, or a dataset config to render first"),
            SPLIT.but(help="split of originals (default test)"),
            _opt("--attributes", nargs="+", help="attributes (default: every intervention split present)"), CREATE_INTERVENTIONS,
            _opt("--random-init", action="store_true", old=("--baseline-random",),
                 help="also measure a random-init model of the same architecture"),
            RESAMPLES, *POOL, SEED, _opt("-o", "--output", help="directory for CSV, Markdown and figure (default: next to the model)")),
            old=("importance",)),
        _Command(("evaluate", "audit"), "what INN counterfactuals really change, read by the observer (paper Table 6)", _cmd_evaluate_audit, (
            _opt("--inn", required=True, help="INN checkpoint (model.pt or its directory)"), OBSERVER, DATA,
            SPLIT.but(help="split of images to interpolate (default test)"),
            IMAGES.but(default=100, help="interpolations, one per image (default 100)"),
            _opt("--steps", type=_integer(2), default=11, help="steps per interpolation (default 11)"),
            _opt("--coverage", type=_share(True), default=0.99, help="central share of the logits spanned (default 0.99)"),
            SEED.but(help="which images are drawn (default 0)"),
            _opt("-o", "--output", help="directory for CSV, Markdown and figure (default: next to the INN)")),
            old=("explain", "audit")),
        _Command(("evaluate", "observer"), "the observer's per-attribute error on a split (are the attributes recoverable?)",
                 _cmd_evaluate_observer, (OBSERVER, DATA, SPLIT,
                                          _opt("-o", "--output", help="directory for the table (default: next to the observer)")),
                 old=("explain", "observe")),
        _Command(("evaluate", "attributions"), "localisation, part deletion, attribute agreement, model contrast and sanity checks",
                 _cmd_evaluate_attributions, (
                     MODEL.but(help="the classifier the maps explain"),
                     DATA.but(help="rendered dataset directory (part removals are rendered into it when missing)"), MAPS,
                     SPLIT.but(help="split the maps were computed on (default test)"),
                     _opt("--contrast", nargs=2, metavar=("RELIANT", "UNRELIANT"),
                          help="two classifiers, the first relying on the background more (configs/small_cnn_bg_biased_64px.yaml, small_cnn_unbiased_64px.yaml)"),
                     _opt("--no-removals", action="store_true", help="skip the part-removal scores (renders nothing)"),
                     _opt("--sanity-images", type=_integer(0, " (0: skip the sanity checks)"), default=32,
                          help="images in the cascading randomisation (0: skip; default 32)"),
                     RESAMPLES, SEED, *POOL, OUTPUT.but(help="output directory (attribution_scores.md/.csv/.json/.png)"))),
        _Command(("evaluate", "faithfulness"), "ROAD MoRF/LeRF curves and masked-pixel curves of each method's maps",
                 _cmd_evaluate_faithfulness, (
                     MODEL.but(help="the classifier the maps explain"), DATA, MAPS, SPLIT.but(help="split the maps were computed on (default test)"),
                     _opt("--percentages", type=_percent, nargs="+", default=list(DEFAULT_PERCENTAGES), metavar="P",
                          help="%% of pixels removed for MoRF and LeRF (default 10 … 90)"),
                     _opt("--imputation", choices=IMPUTATIONS, default="linear", help="how removed pixels are filled (default: ROAD's noisy linear)"),
                     _opt("--reveal-levels", type=_percent, nargs="*", default=list(REVEAL_LEVELS), metavar="P",
                          help="%% of pixels shown for the masked-pixel curves (default Biessmann & Refiano's ten; none: skip)"),
                     _opt("--reveal-fill", choices=("fixed", "linear"), default="fixed", help="the hidden pixels: grey (default) or ROAD-imputed"),
                     SCORES.but(help=SCORES.spec["help"] + ": its table gets the faithfulness scores"), RESAMPLES, SEED,
                     OUTPUT.but(help="output directory (faithfulness.md/.csv/.png; attribution_scores.* with --scores)"))),
        _Command(("explore",), "a local web page: maps, ROAD curves with a slider, and each image's ground truth", _cmd_explore, (
            MODEL, DATA, SPLIT.but(help="split to explore (default test)"),
            MAPS.but(required=False, help="directory written by `two4two explain attributions` (default: compute maps on demand)"),
            _opt("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"),
            _opt("--port", type=_port, default=8050, help="port (default 8050)"))),
        _Command(("benchmark",), "sweep a bias from absent to dominant, train each architecture on each strength, and score "
                 "whether each attribution method follows the measured reliance", _cmd_benchmark, (
                     _opt("config", help="benchmark config (YAML; configs/benchmark.yaml, configs/benchmark_tiny.yaml)"),
                     OUTPUT.but(help="run directory (a stopped run of the same config continues there)"), *POOL)),
        # the study
        _Command(("study", "bundle"), "study bundle of any paradigm: stimuli or trials, manifest.json (see configs/study_*.yaml)",
                 _cmd_study_bundle, (
                     _opt("config", help="study config (YAML; configs/study-cpu.yaml for the 2022 study, configs/study_reveal.yaml, "
                                         "study_accept_reject.yaml, study_guess.yaml for the trial paradigms)"),
                     OUTPUT.but(help="bundle folder to create"),
                     _opt("--overwrite", action="store_true", help="replace an existing bundle folder"),
                     CREATE_INTERVENTIONS.but(help="render missing intervention splits for the answer key first"), *POOL),
                 old=("study", "export")),
        _Command(("study", "serve"), "run the study web app on a bundle (participants' answers go to a SQLite file)", _cmd_study_serve, (
            _opt("bundle", help="study bundle directory (from `two4two study bundle`)"),
            _opt("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for a network)"),
            _opt("--port", type=_port, default=8000, help="port (default 8000)"),
            _opt("--db", default="responses.sqlite", help="responses database, created if missing (default responses.sqlite)"),
            _opt("--request-threads", type=_integer(1), default=8, old=("--threads",), help="request threads (default 8)"))),
        _Command(("study", "responses"), "completed participants' answers as the CSV `study analyze` reads", _cmd_study_responses, (
            _opt("--db", required=True, help="responses database of `study serve`"),
            _opt("--bundle", required=True, help="the bundle the study ran (its answer key fills `expected`)"),
            OUTPUT.but(help="output directory (responses.csv; every participant's status in responses_participants.csv)")),
            old=("study", "export-responses")),
        _Command(("study", "analyze"), "exclusions, accuracy table (paper Table 2), tests and figure (Figure 4)", _cmd_study_analyze, (
            _opt("responses", help="responses CSV (one row per participant and attribute; with --bundle one row per trial step)"),
            _opt("--rules", help="exclusion rules (YAML/JSON; default: the paper's, see configs/study_exclusions.yaml)"),
            _opt("--control-condition", old=("--baseline-condition",),
                 help="condition the others are compared with (default baseline)"),
            _opt("--reference-attribute", help="attribute the McNemar tests compare with (default legs)"),
            _opt("--expect", nargs="+", type=_keyed("CONDITION=greater|less", _direction, "counterfactual=greater"),
                 metavar="CONDITION=greater|less", help="pre-registered direction against the control (one-sided tests)"),
            _opt("--bundle", help="the bundle the study ran: its paradigm picks the statistics (default: the 2022 study)"),
            SCORES.but(help="trial paradigms: " + SCORES.spec["help"] + " (the model's ranking of the methods)"),
            _opt("--keep-too-fast", action="store_true", help="trial paradigms: keep answers faster than the bundle's too_fast_seconds"),
            _opt("-o", "--output", help="output directory (default: RESPONSES_analysis next to the file)"))),
        _Command(("study", "report"), "per attribution method: automatic scores beside each paradigm's human measure, rank correlations",
                 _cmd_study_report, (
                     SCORES.but(required=True),
                     _opt("--analysis", required=True, nargs="+", metavar="DIR", help="output directories of `two4two study analyze --bundle`"),
                     _opt("--score-names", nargs="+", default=list(DEFAULT_SCORES), metavar="SCORE",
                          help=f"automatic scores to compare (default: {' '.join(DEFAULT_SCORES)})"),
                     RESAMPLES.but(help="participant resamples for the intervals (default 1000)"), SEED,
                     OUTPUT.but(help="output directory (report.md, report.json, report.png)"))),
        _Command(("study", "simulate"), "synthetic responses in the study app's format, to try analyze", _cmd_study_simulate, (
            _opt("--per-condition", type=_integer(1), default=60, help="participants per condition (default 60)"), SEED,
            _opt("--bundle", help="simulate the participants of this bundle, any paradigm (default: the 2022 study, the paper's answer key)"),
            _opt("--paradigm", choices=PARADIGM_NAMES, help="the paradigm expected of --bundle (checked)"),
            _opt("--effect", nargs="+", metavar="KEY=DELTA", type=_keyed("KEY=DELTA with DELTA in [-1, 1]", _delta, "knn=0.1"),
                 help="planted effects on P(correct): CONDITION=DELTA, or METHOD@LEVEL=DELTA in a progressive reveal"),
            _opt("--too-fast-share", type=_share(False), default=0.0, help="share of answers given too fast (trial paradigms)"),
            OUTPUT.but(help="output directory (responses.csv)"))),
    )


def _renamed(run: Callable, old: tuple[str, ...], new: tuple[str, ...]) -> Callable:
    def deprecated(args: argparse.Namespace):
        print(f"two4two: `{' '.join(old)}` is now `{' '.join(new)}`; the old name goes in the next release", file=sys.stderr)
        return run(args)
    return deprecated


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command of _commands() (and, unlisted, of their previous names)."""
    from two4two import __version__

    parser = argparse.ArgumentParser(prog="two4two", description="Synthetic Peeky/Stretchy images with biases of known strength.")
    parser.add_argument("--version", action="version", version=f"two4two {__version__}")
    groups = {(): parser.add_subparsers(dest="command", required=True, metavar="COMMAND")}

    def group(path: tuple[str, ...]):
        if path not in groups:
            listed = {"help": GROUPS[path[-1]]} if path[-1] in GROUPS else {}
            p = group(path[:-1]).add_parser(path[-1], **listed)
            groups[path] = p.add_subparsers(dest="_".join(path) + "_command", required=True, metavar=f"{path[-1].upper()}_COMMAND")
        return groups[path]

    for command in _commands():
        names = [(command.path, command.run, {"help": command.help})]
        if command.old:
            names.append((command.old, _renamed(command.run, command.old, command.path), {}))  # works, unlisted
        for path, run, listed in names:
            p = group(path[:-1]).add_parser(path[-1], description=command.help, **listed)
            for option in command.options:
                _add(p, option)
            p.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except Two4TwoError as exc:
        print(f"two4two: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"two4two: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("two4two: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
