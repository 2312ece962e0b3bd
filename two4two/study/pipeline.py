"""One study pipeline for every paradigm, the 2022 study included.

A config becomes a bundle (`export_bundle`), participants — real ones through `study serve`,
or simulated ones (`simulate`) — give responses, and the responses an analysis (`analyze`).
Each paradigm is one `Study` with these steps; the command line calls the functions below
and never asks which paradigm it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from two4two.errors import Two4TwoError
from two4two.study.bundle import FORMAT, VERSION, Bundle, load_bundle, write_manifest
from two4two.study.paradigms import ATTRIBUTE_RELEVANCE, PARADIGMS


@dataclass(frozen=True)
class Simulated:
    """Synthetic answers in the format `study responses` exports."""

    csv: str
    answers: int
    participants: int


class Study:
    """One paradigm's steps. `build` writes the paradigm's files into the bundle folder and
    returns its part of the manifest; the rest of the manifest is the same for every paradigm."""

    name = ""  # how errors name the paradigm
    folders: tuple[str, ...] = ()
    analysis_options: tuple[str, ...] = ()  # the options of `analyze` this paradigm reads
    simulation_options: tuple[str, ...] = ()  # the options of `simulate` this paradigm reads

    def interventions(self, config) -> dict[str, list[str]]:
        """Intervention splits the bundle's answer key reads (rendered first with --create-interventions)."""
        return {}

    def build(self, config, model, split, root: Path, tutorial: list[str], progress: bool) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self, bundle: Bundle) -> list[str]:
        raise NotImplementedError

    def responses_csv(self, storage) -> str:
        """The completed participants' answers in the format `analyze` reads."""
        raise NotImplementedError

    def simulate(self, bundle: Bundle | None, per_condition: int, seed: int, **options) -> Simulated:
        raise NotImplementedError

    def analyze(self, responses: Path, bundle: Bundle | None, **options):
        raise NotImplementedError


class AttributeRelevance(Study):
    """The 2022 study (Sixt et al.): one explanation per condition, five relevance questions."""

    name = "2022 study (attribute relevance)"
    folders = ("stimuli", "tutorial")
    analysis_options = ("rules", "control_condition", "reference_attribute", "expect")

    def interventions(self, config) -> dict[str, list[str]]:
        from two4two.parameters import MEASURED_ATTRIBUTES

        return {config.split: list(MEASURED_ATTRIBUTES)}

    def build(self, config, model, split, root, tutorial, progress):
        from two4two.study.export import build_attribute_relevance

        return build_attribute_relevance(config, model, split, root, tutorial)

    def describe(self, bundle):
        import json

        key = json.loads((bundle.root / "answer_key.json").read_text())
        lines = [f"answer key ({key['rule']['measure']} lower bound > {key['threshold']:.4g}): "
                 + ", ".join(f"{q} {a}" for q, a in bundle.answer_key.items())]
        return lines + [f"  {c.name:<15} {c.stimulus.images_shown} images: {bundle.root / c.stimulus.image}" for c in bundle.conditions]

    def responses_csv(self, storage):
        from two4two.study.responses import responses_csv

        return responses_csv(storage.responses())

    def simulate(self, bundle, per_condition, seed, **options):
        from two4two.study.responses import responses_csv
        from two4two.study.simulate import PAPER_ACCURACY, simulate_responses

        accuracy = PAPER_ACCURACY
        if bundle is not None:
            unknown = [name for name in bundle.condition_names if name not in PAPER_ACCURACY]
            if unknown:
                raise Two4TwoError(f"bundle {bundle.root}: condition {unknown[0]!r} has no simulated accuracy; "
                                   f"allowed: {', '.join(PAPER_ACCURACY)}")
            accuracy = {name: PAPER_ACCURACY[name] for name in bundle.condition_names}
        responses = simulate_responses(per_condition, seed=seed, accuracy=accuracy,
                                       answer_key=bundle.answer_key if bundle is not None else None)
        return Simulated(responses_csv(responses), len(responses), len({r.participant_id for r in responses}))

    def analyze(self, responses, bundle, rules=None, control_condition="baseline", reference_attribute="legs", expect=None):
        from two4two.study.exclusions import DEFAULT_RULES, load_rules
        from two4two.study.responses import read_responses
        from two4two.study.statistics import analyze

        return analyze(read_responses(responses), load_rules(rules) if rules else list(DEFAULT_RULES), control_condition,
                       reference_attribute, expect, source=str(responses))


class TrialParadigm(Study):
    """Progressive reveal, accept or reject, guess the output: a bundle of trials, one row per step."""

    name = "trial paradigm"
    folders = ("pictures", "tutorial")
    analysis_options = ("scores", "keep_too_fast")
    simulation_options = ("effect", "too_fast_share")

    def build(self, config, model, split, root, tutorial, progress):
        from two4two.study.trial_export import build_trials

        return build_trials(config, model, split, root, tutorial, progress)

    def describe(self, bundle):
        from collections import Counter

        lines = [f"{bundle.paradigm}: {len(bundle.trials)} trials ({sum(len(t.steps) for t in bundle.trials)} pages)"]
        for condition in bundle.condition_names:
            groups = Counter(t.group for t in bundle.trials if t.condition == condition)
            lines.append(f"  {condition:<22} " + ", ".join(f"{g} {n}" for g, n in groups.items()))
        lines.append(f"each participant draws {bundle.order.trials_per_participant}: "
                     + ", ".join(f"{g} {n}" for g, n in bundle.order.draw.items()))
        if "ai_alone" in bundle.facts:
            ai = bundle.facts["ai_alone"]
            lines.append(f"AI alone: accept when confidence ≥ {ai['threshold']} (validation accuracy "
                         f"{ai['validation_accuracy']:.3f}, test {ai['test_accuracy']:.3f})")
        return lines

    def responses_csv(self, storage):
        """One row per trial step: the fixed columns first, then the trials' and steps' facts (sorted)."""
        from two4two.study.paradigms import RESPONSE_COLUMNS
        from two4two.study.responses import csv_text

        rows = storage.trial_responses()
        head = [*RESPONSE_COLUMNS, *sorted({k for r in rows for k in r} - set(RESPONSE_COLUMNS))]
        return csv_text(head, ([r.get(k, "") for k in head] for r in rows))

    def simulate(self, bundle, per_condition, seed, effect=None, too_fast_share=0.0):
        from two4two.study.trial_analysis import simulate_trial_responses

        if bundle is None:
            raise Two4TwoError("simulate: a trial paradigm's answers refer to its bundle's trials; pass --bundle")
        frame = simulate_trial_responses(bundle, per_condition, effect, seed=seed, too_fast_share=too_fast_share)
        return Simulated(frame.to_csv(index=False), len(frame), int(frame["participant_id"].nunique()))

    def analyze(self, responses, bundle, scores=None, keep_too_fast=False):
        from two4two.study.trial_analysis import analyze_trials, read_scores, read_trial_responses

        automatic = read_scores(scores).get("reveal_cross_entropy", {}) if scores else {}
        return analyze_trials(read_trial_responses(responses), bundle, automatic, keep_too_fast=keep_too_fast)


STUDIES: dict[str, Study] = {ATTRIBUTE_RELEVANCE: AttributeRelevance(), **{name: TrialParadigm() for name in PARADIGMS}}


def study_of(bundle: Bundle | None) -> Study:
    """The paradigm's steps; no bundle means the 2022 study (its responses carry their answer key)."""
    return STUDIES[bundle.paradigm if bundle is not None else ATTRIBUTE_RELEVANCE]


def load_config(path: str | Path):
    """A study config: `paradigm` (default the 2022 study's) picks the parser. Paths in it are
    relative to the working directory, as in every other two4two config."""
    from two4two.config import read_yaml
    from two4two.study.export import parse_study_config
    from two4two.study.trial_export import parse_trial_config

    raw = read_yaml(path, "study config")
    if isinstance(raw, dict) and raw.get("paradigm", ATTRIBUTE_RELEVANCE) != ATTRIBUTE_RELEVANCE:
        return parse_trial_config(raw, str(path))
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if k != "paradigm"}
    return parse_study_config(raw, str(path))


def paradigm_of(config) -> str:
    return getattr(config, "paradigm", ATTRIBUTE_RELEVANCE)


def export_bundle(config, out_dir: str | Path, overwrite: bool = False, progress: bool = True) -> Bundle:
    """Write the bundle of `config` into `out_dir`. It is built beside its destination and moved into
    place at the end (a failed export leaves nothing), and its manifest is checked by the reader the
    study app uses before it is written. Reads finished data only (see `Study.interventions`)."""
    from two4two.explain.counterfactual import require_invertible
    from two4two.models.training import load_classifier
    from two4two.split import Split
    from two4two.study.pictures import built_beside, tutorial_pictures

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise Two4TwoError(f"{out_dir}: already exists; choose another folder or pass --overwrite")
    study = STUDIES[paradigm_of(config)]
    model = load_classifier(config.model)
    if "counterfactual" in config.conditions:
        require_invertible(model, f"model {config.model} (needed by the counterfactual condition)")
    with built_beside(out_dir, study.folders) as partial:
        split = Split(config.data, config.split, progress=progress)  # read once: every part below shares it
        tutorial = tutorial_pictures(split, partial / "tutorial")
        part = study.build(config, model, split, partial, tutorial, progress)
        write_manifest(partial, {
            "format": FORMAT, "version": VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": {"path": config.model, "arch": type(model).__name__},
            "dataset": {"root": config.data, "split": config.split},
            **part,
            "completion": {"text": "Thank you! Your completion code is below."},
        })
    return load_bundle(out_dir)


def simulate(bundle: Bundle | None, per_condition: int, seed: int = 0, paradigm: str | None = None, **options) -> Simulated:
    """Synthetic participants of the bundle's paradigm (no bundle: the 2022 study with the paper's answer key)."""
    held = bundle.paradigm if bundle is not None else ATTRIBUTE_RELEVANCE
    study = STUDIES[held]
    if paradigm and paradigm != held:
        raise Two4TwoError(f"--paradigm {paradigm}: " + (f"the bundle {bundle.root} is a {bundle.paradigm} study" if bundle
                                                          else "a trial paradigm's answers refer to its bundle's trials; pass --bundle"))
    return study.simulate(bundle, per_condition, seed, **_taken(study, study.simulation_options, options))


def analyze(responses: str | Path, bundle: Bundle | None = None, **options):
    """The paradigm's analysis of a responses CSV: an object with markdown() and write(out_dir)."""
    study = study_of(bundle)
    return study.analyze(Path(responses), bundle, **_taken(study, study.analysis_options, options))


def _taken(study: Study, allowed: tuple[str, ...], options: Mapping[str, Any]) -> dict[str, Any]:
    """The options this paradigm reads; one it does not read but was given is an error naming it."""
    for key, value in options.items():
        if key not in allowed and value not in (None, False, 0, 0.0, (), []):
            raise Two4TwoError(f"--{key.replace('_', '-')}: not read by the {study.name}; it reads "
                               + (", ".join(f"--{k.replace('_', '-')}" for k in allowed) or "no such options"))
    return {k: v for k, v in options.items() if k in allowed and v is not None}


def export_responses(db: str | Path, bundle: Bundle, output: str | Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """The completed participants' answers as the responses CSV `analyze` reads (the paradigm's
    format) and every participant (also excluded and unfinished ones) in OUTPUT_participants.csv;
    both written atomically."""
    from two4two.io import atomic_write_files
    from two4two.errors import StorageError
    from two4two.study.responses import csv_text
    from two4two.study.storage import REPORT_COLUMNS, Storage

    db, output = Path(db), Path(output)
    if not db.is_file():
        raise StorageError(f"{db}: no such responses database (written by `two4two study serve --db`)")
    storage = Storage(db, bundle)
    report_path = output.with_name(f"{output.stem}_participants.csv")
    try:
        report = storage.participants_report()
        report_csv = csv_text(REPORT_COLUMNS, ([r[k] for k in REPORT_COLUMNS] for r in report))
        atomic_write_files({output: study_of(bundle).responses_csv(storage).encode(), report_path: report_csv.encode()})
    finally:
        storage.close()
    return output, report_path, report
