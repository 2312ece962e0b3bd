"""A study bundle: the manifest and images one study runs on (docs/guides/studies.md, "Study runner").

`two4two study bundle` writes a bundle, `two4two study serve` runs it, `study responses` reads
its answer key. Both sides go through this module, so a bundle the exporter self-checks with
`write_manifest`/`load_bundle` is exactly one the app accepts. Every problem raises BundleError
naming the manifest field, the value and what is allowed.

    BUNDLE_DIR/manifest.json, stimuli/<condition>.png (+ .json sidecar), tutorial/<file>.png

A manifest without `paradigm` is the 2022 study (`attribute_relevance`: one explanation per
condition, five questions, an answer key). A trial paradigm (`two4two.study.paradigms`)
instead lists `trials` (each one or more steps: images, prompt, choices, the correct answer),
an `order` rule (how many trials of each group a participant draws) and `timing` (answers
faster than `too_fast_seconds` are stored and flagged, so the analysis can exclude them).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from two4two.errors import BundleError
from two4two.io import atomic_write_json
from two4two.schema import Fields
from two4two.study.paradigms import (
    ATTRIBUTE_RELEVANCE,
    PARADIGM_NAMES,
    PARADIGMS,
    RESPONSE_COLUMNS,
    DrawError,
    Order,
    Trial,
    TrialImage,
    TrialStep,
    check_trial,
    draw_plan,
)
from two4two.study.responses import ANSWERS, ATTRIBUTES

FORMAT = "two4two-study-bundle"
VERSION = 1
MANIFEST = "manifest.json"
CONDITIONS = ("baseline", "counterfactual", "concepts")
IMAGE_SUFFIXES = (".png",)
MAX_JUSTIFICATION = 10_000  # upper bound on any question's max_length (the app's request limit follows it)
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")  # condition names of trial paradigms
ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,80}")  # trial and step ids (sent back by the trial form)
MAX_TRIALS = 100_000

__all__ = [
    "ANSWERS",
    "ATTRIBUTES",
    "CONDITIONS",
    "FORMAT",
    "MANIFEST",
    "VERSION",
    "Bundle",
    "ComprehensionQuestion",
    "Condition",
    "Justification",
    "BundleQuestion",
    "Stimulus",
    "TextPage",
    "consent",
    "load_bundle",
    "parse_manifest",
    "write_manifest",
]


@dataclass(frozen=True)
class TextPage:
    """Text (paragraphs separated by blank lines) and example images (bundle-relative paths)."""

    text: str
    images: tuple[str, ...] = ()

    @property
    def paragraphs(self) -> list[str]:
        return [p.strip() for p in self.text.split("\n\n") if p.strip()]


@dataclass(frozen=True)
class ComprehensionQuestion:
    id: str
    text: str
    choices: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class Stimulus:
    image: str
    caption: str
    images_shown: int


@dataclass(frozen=True)
class Condition:
    name: str
    title: str
    tutorial: TextPage
    comprehension: tuple[ComprehensionQuestion, ...]
    stimulus: Stimulus | None  # the one explanation of an attribute-relevance condition; None in trial paradigms


@dataclass(frozen=True)
class Justification:
    required: bool
    min_length: int
    max_length: int


@dataclass(frozen=True)
class BundleQuestion:
    """One question as a bundle states it: the text shown, the choices, the justification asked for."""

    attribute: str
    label: str
    text: str
    choices: tuple[str, ...]
    justification: Justification


@dataclass(frozen=True)
class Bundle:
    root: Path | None  # None for a manifest not read from a directory
    title: str
    created: str
    consent: TextPage
    introduction: TextPage
    conditions: tuple[Condition, ...]
    questions: tuple[BundleQuestion, ...]
    answer_key: Mapping[str, str]
    completion: TextPage
    fingerprint: str  # sha256 of the canonical manifest: ties a responses database to its bundle
    paradigm: str = ATTRIBUTE_RELEVANCE
    trials: tuple[Trial, ...] = ()
    order: Order | None = None
    too_fast_seconds: float = 0.0
    facts: Mapping[str, Any] = field(default_factory=dict)  # informational blocks (automatic scores, AI alone, ...)

    @property
    def is_trial_paradigm(self) -> bool:
        return self.paradigm != ATTRIBUTE_RELEVANCE

    def trial(self, trial_id: str) -> Trial:
        for t in self.trials:
            if t.id == trial_id:
                return t
        raise BundleError(f"{MANIFEST}: no trial {trial_id!r}")

    def condition(self, name: str) -> Condition:
        for c in self.conditions:
            if c.name == name:
                return c
        raise BundleError(f"{MANIFEST}: no condition {name!r}; the bundle has {', '.join(self.condition_names)}")

    @property
    def condition_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.conditions)

    @property
    def image_paths(self) -> frozenset[str]:
        """Every image the manifest lists: the only files the app serves."""
        paths = set(self.introduction.images)
        for c in self.conditions:
            paths.update(c.tutorial.images)
            if c.stimulus is not None:
                paths.add(c.stimulus.image)
        for t in self.trials:
            paths.update(image.image for step in t.steps for image in step.images)
        return frozenset(paths)

    def question(self, attribute: str) -> BundleQuestion:
        for q in self.questions:
            if q.attribute == attribute:
                return q
        raise BundleError(f"{MANIFEST}: no question on {attribute!r}; allowed: {', '.join(ATTRIBUTES)}")


# ---------------------------------------------------------------- validation helpers


class _Fields(Fields):
    """One JSON object of the manifest (two4two.schema's reader, raising BundleError), with the
    bundle's own reads: texts, images inside the bundle and text pages."""

    def __init__(self, raw: Any, where: str, source: str, required: tuple[str, ...], optional: tuple[str, ...] = ()):
        super().__init__(raw, source, where, allowed=optional, required=required, error=BundleError, what="an object")

    def text(self, key: str, empty: bool = False) -> str:
        return super().text(key, "", empty)

    def choice(self, key: str, allowed: tuple[Any, ...]) -> Any:
        value = self.raw.get(key)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise self.error(self.path(key), value, f"one of {', '.join(map(repr, allowed))}")
        return value

    def integer(self, key: str, low: int, high: int | None = None) -> int:
        return super().integer(key, None, low, high)

    def items(self, key: str, nonempty: bool = True) -> list[Any]:
        return super().items(key, [], nonempty)

    def texts(self, key: str, least: int = 0) -> tuple[str, ...]:
        values = self.items(key, nonempty=least > 0)
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v.strip():
                raise self.error(f"{self.path(key)}[{i}]", v, "non-empty text")
        if len(values) < least or len(set(values)) != len(values):
            raise self.error(self.path(key), values, f"at least {least} different texts")
        return tuple(values)

    def image(self, field: str, value: Any, root: Path | None) -> str:
        """A bundle-relative image path that stays inside the bundle (and exists, for a directory)."""
        allowed = f"a relative path with '/' inside the bundle ending in {', '.join(IMAGE_SUFFIXES)}"
        if not isinstance(value, str) or not value or "\\" in value or "\x00" in value:
            raise self.error(field, value, allowed)
        pure = PurePosixPath(value)
        if pure.is_absolute() or any(part in ("..", ".", "") for part in value.split("/")) or pure.suffix.lower() not in IMAGE_SUFFIXES:
            raise self.error(field, value, allowed)
        if root is not None:
            path = (root / value).resolve()
            if not path.is_relative_to(root.resolve()):
                raise self.error(field, value, f"{allowed} (it leaves the bundle through a link)")
            if not path.is_file():
                raise BundleError(f"{self.source}: {field} {value!r} names no file in {root}")
        return value

    def page(self, key: str, root: Path | None, images: bool = True) -> TextPage:
        sub = _Fields(self.raw.get(key), self.path(key), self.source, ("text",), ("images",) if images else ())
        paths = [sub.image(f"{sub.path('images')}[{i}]", v, root) for i, v in enumerate(sub.items("images", nonempty=False))]
        return TextPage(sub.text("text"), tuple(paths))


# ---------------------------------------------------------------- parsing


TOP_REQUIRED = ("format", "version", "title", "consent", "introduction", "conditions", "questions", "answer_key", "completion")
TOP_OPTIONAL = ("created", "model", "dataset", "answer_key_rule", "paradigm")
TRIAL_TOP_REQUIRED = ("format", "version", "paradigm", "title", "consent", "introduction", "conditions", "trials", "order", "completion")
TRIAL_TOP_OPTIONAL = ("created", "model", "dataset", "timing", "facts")


def canonical_json(raw: Any) -> str:
    """JSON with sorted keys and no spaces: a manifest's fingerprint, a stored page's payload."""
    return json.dumps(raw, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def parse_manifest(raw: Any, root: str | Path | None = None, source: str = MANIFEST) -> Bundle:
    """Validate a manifest (a dict, as json.load gives it); with `root`, also check that its images exist."""
    root = Path(root) if root is not None else None
    paradigm = raw.get("paradigm", ATTRIBUTE_RELEVANCE) if isinstance(raw, dict) else ATTRIBUTE_RELEVANCE
    if paradigm not in PARADIGM_NAMES:
        raise _Fields({}, "", source, ()).error("paradigm", paradigm, f"one of {', '.join(map(repr, PARADIGM_NAMES))}")
    trial_paradigm = paradigm != ATTRIBUTE_RELEVANCE
    top = _Fields(raw, "", source, *((TRIAL_TOP_REQUIRED, TRIAL_TOP_OPTIONAL) if trial_paradigm else (TOP_REQUIRED, TOP_OPTIONAL)))
    if raw["format"] != FORMAT:
        raise top.error("format", raw["format"], repr(FORMAT))
    top.choice("version", (VERSION,))
    created = raw.get("created", "")
    if created:
        try:
            datetime.fromisoformat(top.text("created"))
        except ValueError:
            raise top.error("created", created, "an ISO 8601 time such as 2026-11-22T15:00:00+00:00") from None
    for key in ("model", "dataset", "facts"):
        if key in raw and not isinstance(raw[key], dict):
            raise top.error(key, raw[key], "an object (informational)")

    consent, completion = top.page("consent", root, images=False), top.page("completion", root, images=False)
    conditions = _conditions(top, root, source, trial_paradigm)
    common = dict(
        root=root,
        title=top.text("title"),
        created=created,
        consent=consent,
        introduction=top.page("introduction", root),
        conditions=conditions,
        completion=completion,
        fingerprint=hashlib.sha256(canonical_json(raw).encode()).hexdigest(),
        paradigm=paradigm,
    )
    if trial_paradigm:
        trials = _trials(top, root, source, PARADIGMS[paradigm], [c.name for c in conditions])
        order = _order(top, source, trials, [c.name for c in conditions])
        timing = _Fields(raw.get("timing", {}), "timing", source, (), ("too_fast_seconds",))
        too_fast = timing.raw.get("too_fast_seconds", 0.0)
        if isinstance(too_fast, bool) or not isinstance(too_fast, (int, float)) or not 0 <= too_fast < 3600:
            raise timing.error("timing.too_fast_seconds", too_fast, "a number of seconds ≥ 0 and < 3600")
        return Bundle(**common, questions=(), answer_key={}, trials=tuple(trials), order=order,
                      too_fast_seconds=float(too_fast), facts=dict(raw.get("facts", {})))
    questions = _questions(top, source)
    key = _Fields(raw["answer_key"], "answer_key", source, ATTRIBUTES)
    return Bundle(**common, questions=questions, answer_key={a: key.choice(a, ANSWERS) for a in ATTRIBUTES})


def _conditions(top: _Fields, root: Path | None, source: str, trial_paradigm: bool) -> tuple[Condition, ...]:
    conditions: list[Condition] = []
    for i, item in enumerate(top.items("conditions")):
        fields = ("name", "title", "tutorial", "comprehension") + (() if trial_paradigm else ("stimulus",))
        c = _Fields(item, f"conditions[{i}]", source, fields)
        if trial_paradigm:
            name = c.text("name")
            if not NAME_PATTERN.fullmatch(name):
                raise c.error(c.path("name"), name, "a name of lower-case letters, digits and _ (up to 40, a letter first)")
        else:
            name = c.choice("name", CONDITIONS)
        if name in [x.name for x in conditions]:
            raise c.error(c.path("name"), name, "each condition once")
        checks = []
        for j, q in enumerate(c.items("comprehension", nonempty=False)):
            f = _Fields(q, f"{c.path('comprehension')}[{j}]", source, ("id", "text", "choices", "answer"))
            choices = f.texts("choices", least=2)
            qid = f.text("id")
            if qid in [x.id for x in checks]:
                raise f.error(f.path("id"), qid, "an id used once in the condition")
            checks.append(ComprehensionQuestion(qid, f.text("text"), choices, f.choice("answer", choices)))
        stimulus = None
        if not trial_paradigm:
            s = _Fields(item["stimulus"], c.path("stimulus"), source, ("image", "caption"), ("images_shown",))
            stimulus = Stimulus(
                s.image(s.path("image"), s.raw["image"], root),
                s.text("caption", empty=True),
                s.integer("images_shown", 0) if "images_shown" in s.raw else 0,
            )
        conditions.append(Condition(name, c.text("title"), c.page("tutorial", root), tuple(checks), stimulus))
    return tuple(conditions)


def _questions(top: _Fields, source: str) -> tuple[BundleQuestion, ...]:
    questions = []
    items = top.items("questions")
    if len(items) != len(ATTRIBUTES):
        raise top.error("questions", [q.get("attribute") if isinstance(q, dict) else q for q in items],
                        f"{len(ATTRIBUTES)} questions, on {', '.join(ATTRIBUTES)} in this order")
    for i, (item, attribute) in enumerate(zip(items, ATTRIBUTES)):
        q = _Fields(item, f"questions[{i}]", source, ("attribute", "label", "text", "choices", "justification"))
        if q.raw["attribute"] != attribute:
            allowed = f"{attribute!r} (the questions are on {', '.join(ATTRIBUTES)} in this order)"
            raise q.error(q.path("attribute"), q.raw["attribute"], allowed)
        choices = q.texts("choices", least=2)
        if sorted(choices) != sorted(ANSWERS):
            raise q.error(q.path("choices"), list(choices), f"the answers {', '.join(ANSWERS)} in any order")
        j = _Fields(q.raw["justification"], q.path("justification"), source, ("required", "min_length", "max_length"))
        low = j.integer("min_length", 0, MAX_JUSTIFICATION)
        justification = Justification(j.boolean("required"), low, j.integer("max_length", max(low, 1), MAX_JUSTIFICATION))
        questions.append(BundleQuestion(attribute, q.text("label"), q.text("text"), choices, justification))
    return tuple(questions)


def _facts(f: _Fields, key: str) -> dict[str, Any]:
    """A flat object of texts, finite numbers and booleans (columns of the responses export)."""
    value = f.raw.get(key, {})
    if not isinstance(value, dict):
        raise f.error(f.path(key), value, "an object of texts and numbers")
    for k, v in value.items():
        finite = isinstance(v, (str, bool)) or (isinstance(v, (int, float)) and math.isfinite(v))
        if not ID_PATTERN.fullmatch(k) or not finite:
            raise f.error(f"{f.path(key)}.{k}", v, "an object of texts, finite numbers and booleans under plain keys")
        if k in RESPONSE_COLUMNS:
            raise f.error(f"{f.path(key)}.{k}", v, f"a fact under a name other than the export's own columns ({', '.join(RESPONSE_COLUMNS)})")
    return dict(value)


def _trials(top: _Fields, root: Path | None, source: str, paradigm, conditions: list[str]) -> list[Trial]:
    trials: list[Trial] = []
    ids: set[str] = set()
    items = top.items("trials")
    if len(items) > MAX_TRIALS:
        raise top.error("trials", len(items), f"at most {MAX_TRIALS} trials")
    for i, item in enumerate(items):
        t = _Fields(item, f"trials[{i}]", source, ("id", "condition", "group", "item", "steps"), ("info",))
        tid = t.text("id")
        if not ID_PATTERN.fullmatch(tid) or tid in ids:
            raise t.error(t.path("id"), tid, "an id of letters, digits, _ . - (up to 80) used once")
        ids.add(tid)
        condition = t.choice("condition", tuple(conditions))
        steps = []
        for j, raw_step in enumerate(t.items("steps")):
            f = _Fields(raw_step, f"{t.path('steps')}[{j}]", source, ("id", "prompt", "images", "choices", "correct"), ("text", "info"))
            sid = f.text("id")
            if not ID_PATTERN.fullmatch(sid) or sid in [x.id for x in steps]:
                raise f.error(f.path("id"), sid, "an id of letters, digits, _ . - used once in the trial")
            images = []
            for k, raw_image in enumerate(f.items("images")):
                g = _Fields(raw_image, f"{f.path('images')}[{k}]", source, ("image",), ("caption",))
                images.append(TrialImage(g.image(g.path("image"), g.raw["image"], root), g.text("caption", empty=True)))
            choices = f.texts("choices", least=2)
            steps.append(TrialStep(sid, f.text("prompt"), f.text("text", empty=True), tuple(images), choices,
                                   f.choice("correct", choices), _facts(f, "info")))
        trial = Trial(tid, condition, t.text("group"), t.text("item"), tuple(steps), _facts(t, "info"))
        check_trial(paradigm, trial, lambda field, value, allowed, t=t: t.error(t.path(field), value, allowed))
        trials.append(trial)
    missing = [c for c in conditions if not any(t.condition == c for t in trials)]
    if missing:
        raise top.error("trials", f"no trial of condition {missing[0]!r}", "trials for every condition")
    return trials


def _order(top: _Fields, source: str, trials: list[Trial], conditions: list[str]) -> Order:
    o = _Fields(top.raw["order"], "order", source, ("draw",), ("distinct_items", "shuffle"))
    draw = o.raw["draw"]
    if not isinstance(draw, dict) or not draw:
        raise o.error("order.draw", draw, "an object: group → trials each participant draws of it")
    for group, count in draw.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise o.error(f"order.draw.{group}", count, "an integer ≥ 1")
    order = Order(dict(draw), o.boolean("distinct_items", False), o.boolean("shuffle", True))
    for condition in conditions:  # the draw must be possible for a first participant of each condition
        try:
            draw_plan(trials, order, condition, {}, random.Random(0))
        except DrawError as exc:
            raise o.error("order.draw", draw, f"a draw the trials allow ({exc})") from None
    return order


def consent(minutes: int, subject: str) -> dict[str, str]:
    """The consent page every paradigm shows, with its duration and subject."""
    return {"text": (f"You are invited to take part in a research study on how people understand {subject}. It takes "
                     f"about {minutes} minutes. We record your answers and how long you spend on each page, but nothing "
                     "that identifies you. You may stop at any time.\n\nBy continuing you agree to take part.")}


def load_bundle(bundle_dir: str | Path) -> Bundle:
    """Read and validate BUNDLE_DIR/manifest.json and check that every image it lists is in the bundle."""
    root = Path(bundle_dir)
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory (expected the output of `two4two study bundle`)")
    if not path.is_file():
        raise BundleError(f"{root}: no {MANIFEST} in this directory (expected the output of `two4two study bundle`)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return parse_manifest(raw, root, str(path))


def write_manifest(bundle_dir: str | Path, raw: Mapping[str, Any]) -> Bundle:
    """Validate `raw` against the files already in `bundle_dir`, then write manifest.json atomically."""
    root = Path(bundle_dir)
    bundle = parse_manifest(dict(raw), root, str(root / MANIFEST))
    atomic_write_json(root / MANIFEST, raw)
    return bundle
