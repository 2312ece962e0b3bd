"""Statistics of the bias-discovery user study (Sixt et al. 2022, sections 5.2–5.3, Table 2, Figure 4).

Participants look at one explanation of a biased classifier (their *condition*) and rate five
attributes as relevant or irrelevant for it; the share they rate correctly is their accuracy.
This module reads their answers, applies the exclusion rules, and runs the paper's tests.

Responses file (the study app exports exactly this): CSV, UTF-8, long format, one row per
participant × question, header

    participant_id,condition,attribute,answer,expected,seconds,comprehension_failures,justification

- participant_id: non-empty text; each participant answers each attribute exactly once
- condition: non-empty text, one per participant (the study used baseline, counterfactual,
  concepts; the analysis compares whichever conditions are present)
- attribute: legs, colour, background, shape or rotation_bending
- answer, expected: relevant or irrelevant (expected is the answer key)
- seconds: number ≥ 0, time spent on that question's page
- comprehension_failures: integer ≥ 0, failed comprehension checks of that participant
  (the same on all of their rows)
- justification: free text, may be empty (quoted as CSV requires)

Exclusion rules are data (YAML or JSON, see configs/study_exclusions.yaml): a list of
{name, column, op, value, scope, aggregate}. scope "participant" drops a participant when
the rule holds for any of their rows (aggregate: any, the default), for all of them (all),
or for the sum/mean/min/max of the column over their rows; scope "answer" drops single rows.
The defaults are the paper's automatic exclusions that a responses file can express
(preregistration, Appendix D): a comprehension test failed twice, and answering the
questions in under 30 seconds — both exclude the whole participant, as the paper did.

Tests (all from scipy.stats / statsmodels; none written here), chosen as the paper did:
- per condition, Shapiro–Wilk on the per-participant accuracies (is a rank test needed?);
- Kruskal–Wallis on the accuracies across conditions;
- Mann–Whitney U (Wilcoxon rank-sum) of each condition against the baseline condition
  (every pair if there is none), Bonferroni-corrected over these comparisons as
  pre-registered, with effect size r;
- per attribute, Fisher's exact test of correct/incorrect of each condition against the
  baseline (between subjects, so not McNemar); the paper does not name this test;
- Holm–Bonferroni over Kruskal–Wallis, the Mann–Whitney tests and the per-attribute tests
  together, as the paper's footnote 1 did ("corrected for eight tests");
- within each condition, two-sided exact McNemar of the reference attribute (legs, the
  class-defining one) against every other attribute on the same participants, as in the
  paper's first study, Holm-corrected within the condition.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from two4two.errors import ConfigError, ResponsesError, Two4TwoError
from two4two.io import atomic_write_files
from two4two.study.questions import BY_NAME, QUESTION_NAMES

ATTRIBUTES = QUESTION_NAMES  # what each response answers, in the study's order
ANSWERS = ("relevant", "irrelevant")
COLUMNS = (
    "participant_id",
    "condition",
    "attribute",
    "answer",
    "expected",
    "seconds",
    "comprehension_failures",
    "justification",
)
NUMERIC_COLUMNS = ("seconds", "comprehension_failures")
ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class Response:
    participant_id: str
    condition: str
    attribute: str
    answer: str
    expected: str
    seconds: float
    comprehension_failures: int
    justification: str = ""
    line: int = 0  # line of the responses file the row starts on (0: not from a file)

    @property
    def correct(self) -> bool:
        return self.answer == self.expected


# ---------------------------------------------------------------- reading responses


def read_responses(path: str | Path) -> list[Response]:
    """Read and validate a responses CSV; any problem raises ResponsesError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ResponsesError(f"{path}: no such responses file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ResponsesError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_responses(text, str(path))


def parse_responses(text: str, source: str = "<responses>") -> list[Response]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[Response] = []
    try:
        header = next(reader, None)
        if header is None:
            raise ResponsesError(f"{source}: empty file; expected the header {','.join(COLUMNS)}")
        header = [name.strip() for name in header]
        missing = [c for c in COLUMNS if c not in header]
        unknown = [h for h in header if h not in COLUMNS]
        doubled = sorted({h for h in header if header.count(h) > 1})
        if missing or unknown or doubled:
            problems = []
            if missing:
                problems.append(f"missing column(s) {', '.join(missing)}")
            if unknown:
                problems.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
            if doubled:
                problems.append(f"column(s) {', '.join(doubled)} appear twice")
            raise ResponsesError(f"{source}, line 1: {'; '.join(problems)}; the header must be {','.join(COLUMNS)}")
        index = {name: header.index(name) for name in COLUMNS}
        start = reader.line_num + 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not any(f.strip() for f in fields):
                continue  # blank line
            if len(fields) != len(header):
                raise ResponsesError(f"{source}, line {line}: {len(fields)} fields, but the header has {len(header)}")
            rows.append(_parse_row({name: fields[i] for name, i in index.items()}, source, line))
    except csv.Error as exc:
        raise ResponsesError(f"{source}, line {reader.line_num}: not valid CSV ({exc})") from None
    if not rows:
        raise ResponsesError(f"{source}: no responses after the header")
    check_design(rows, source)
    return rows


def _parse_row(rec: dict[str, str], source: str, line: int) -> Response:
    def bad(column: str, value: str, allowed: str) -> ResponsesError:
        return ResponsesError(f"{source}, line {line}: {column} {value!r} is not allowed; expected {allowed}")

    values: dict[str, Any] = {}
    for column in ("participant_id", "condition"):
        values[column] = rec[column].strip()
        if not values[column]:
            raise bad(column, rec[column], "a non-empty name")
    values["attribute"] = rec["attribute"].strip()
    if values["attribute"] not in ATTRIBUTES:
        raise bad("attribute", rec["attribute"], f"one of {', '.join(ATTRIBUTES)}")
    for column in ("answer", "expected"):
        values[column] = rec[column].strip()
        if values[column] not in ANSWERS:
            raise bad(column, rec[column], f"one of {', '.join(ANSWERS)}")
    try:
        seconds = float(rec["seconds"])
    except ValueError:
        raise bad("seconds", rec["seconds"], "a number of seconds ≥ 0") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise bad("seconds", rec["seconds"], "a number of seconds ≥ 0")
    try:
        failures = int(rec["comprehension_failures"].strip())
    except ValueError:
        raise bad("comprehension_failures", rec["comprehension_failures"], "an integer ≥ 0") from None
    if failures < 0:
        raise bad("comprehension_failures", rec["comprehension_failures"], "an integer ≥ 0")
    return Response(
        seconds=seconds, comprehension_failures=failures, justification=rec["justification"], line=line, **values
    )


def check_design(rows: Sequence[Response], source: str = "<responses>") -> None:
    """One condition and one comprehension count per participant, every attribute answered exactly once."""
    for pid, own in _by_participant(rows).items():
        first = own[0]
        for r in own[1:]:
            if r.condition != first.condition:
                raise ResponsesError(
                    f"{source}: participant {pid!r} appears in two conditions ({first.condition!r} on line "
                    f"{first.line}, {r.condition!r} on line {r.line}); each participant sees one condition"
                )
            if r.comprehension_failures != first.comprehension_failures:
                raise ResponsesError(
                    f"{source}: participant {pid!r} has comprehension_failures {first.comprehension_failures} on "
                    f"line {first.line} but {r.comprehension_failures} on line {r.line}; it is one number per participant"
                )
        seen: dict[str, int] = {}
        for r in own:
            if r.attribute in seen:
                raise ResponsesError(
                    f"{source}: participant {pid!r} answers {r.attribute} twice (lines {seen[r.attribute]} and "
                    f"{r.line}); each participant answers each attribute once"
                )
            seen[r.attribute] = r.line
        missing = [a for a in ATTRIBUTES if a not in seen]
        if missing:
            raise ResponsesError(
                f"{source}: participant {pid!r} has no answer for {', '.join(missing)}; "
                f"each participant answers all of {', '.join(ATTRIBUTES)}"
            )


def _by_participant(rows: Iterable[Response]) -> dict[str, list[Response]]:
    out: dict[str, list[Response]] = {}
    for r in rows:
        out.setdefault(r.participant_id, []).append(r)
    return out


def responses_csv(responses: Iterable[Response]) -> str:
    """The responses as the CSV text read_responses reads (the study app writes the same)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in responses:
        writer.writerow([getattr(r, c) for c in COLUMNS])
    return buf.getvalue()


def write_responses(path: str | Path, responses: Iterable[Response]) -> Path:
    path = Path(path)
    atomic_write_files({path: responses_csv(responses).encode()})
    return path


# ---------------------------------------------------------------- exclusion rules

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
AGGREGATES: dict[str, Callable[[np.ndarray], float] | None] = {
    "any": None,
    "all": None,
    "sum": np.sum,
    "mean": np.mean,
    "min": np.min,
    "max": np.max,
}
SCOPES = ("participant", "answer")
RULE_KEYS = ("name", "column", "op", "value", "scope", "aggregate")


@dataclass(frozen=True)
class ExclusionRule:
    name: str
    column: str
    op: str
    value: float | str
    scope: str = "participant"
    aggregate: str = "any"

    def holds_for(self, row: Response) -> bool:
        return OPERATORS[self.op](getattr(row, self.column), self.value)

    def excludes_participant(self, rows: Sequence[Response]) -> bool:
        if self.aggregate == "any":
            return any(self.holds_for(r) for r in rows)
        if self.aggregate == "all":
            return all(self.holds_for(r) for r in rows)
        value = AGGREGATES[self.aggregate](np.array([getattr(r, self.column) for r in rows], dtype=float))
        return OPERATORS[self.op](float(value), self.value)

    def describe(self) -> str:
        test = f"{self.column} {self.op} {self.value!r}"
        if self.scope == "answer":
            return f"answer: {test}"
        if self.aggregate in ("sum", "mean", "min", "max"):
            return f"participant: {self.aggregate}({self.column}) {self.op} {self.value!r}"
        return f"participant: {self.aggregate} answer {test}"

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in RULE_KEYS}


DEFAULT_RULES = (
    ExclusionRule("comprehension_failed_twice", "comprehension_failures", ">=", 2, "participant"),
    ExclusionRule("answered_in_under_30s", "seconds", "<", 30, "participant", aggregate="sum"),
)


def parse_rules(raw: Any, source: str = "<rules>") -> list[ExclusionRule]:
    """Rules from parsed YAML/JSON: a list of rule mappings, or {rules: [...]}."""
    if isinstance(raw, dict):
        if set(raw) != {"rules"}:
            raise ConfigError(f"{source}: expected a list of rules or a mapping with the single key 'rules', got keys {', '.join(map(str, raw))}")
        raw = raw["rules"]
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: rules must be a list of mappings with keys {', '.join(RULE_KEYS)}")
    rules, names = [], set()
    for i, item in enumerate(raw):
        where = f"{source}: rules[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping with keys {', '.join(RULE_KEYS)}, got {item!r}")
        unknown = [k for k in item if k not in RULE_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(RULE_KEYS)}")
        lacking = [k for k in ("name", "column", "op", "value") if k not in item]
        if lacking:
            raise ConfigError(f"{where}: missing key(s) {', '.join(lacking)}")
        rule = ExclusionRule(**{"scope": "participant", "aggregate": "any", **item})
        _check_rule(rule, where)
        if rule.name in names:
            raise ConfigError(f"{where}: name {rule.name!r} is used by an earlier rule")
        names.add(rule.name)
        rules.append(rule)
    return rules


def _check_rule(rule: ExclusionRule, where: str) -> None:
    if not isinstance(rule.name, str) or not rule.name.strip():
        raise ConfigError(f"{where}: name {rule.name!r} must be non-empty text")
    if rule.column not in COLUMNS:
        raise ConfigError(f"{where}: column {rule.column!r} is not allowed; expected one of {', '.join(COLUMNS)}")
    if rule.op not in OPERATORS:
        raise ConfigError(f"{where}: op {rule.op!r} is not allowed; expected one of {' '.join(OPERATORS)}")
    if rule.scope not in SCOPES:
        raise ConfigError(f"{where}: scope {rule.scope!r} is not allowed; expected one of {', '.join(SCOPES)}")
    if rule.aggregate not in AGGREGATES:
        raise ConfigError(f"{where}: aggregate {rule.aggregate!r} is not allowed; expected one of {', '.join(AGGREGATES)}")
    if rule.scope == "answer" and rule.aggregate != "any":
        raise ConfigError(f"{where}: aggregate {rule.aggregate!r} needs scope participant (an answer rule tests one row)")
    numeric = rule.column in NUMERIC_COLUMNS
    if numeric and (isinstance(rule.value, bool) or not isinstance(rule.value, (int, float))):
        raise ConfigError(f"{where}: value {rule.value!r} for column {rule.column} must be a number")
    if not numeric:
        if not isinstance(rule.value, str):
            raise ConfigError(f"{where}: value {rule.value!r} for column {rule.column} must be text")
        if rule.op not in ("==", "!="):
            raise ConfigError(f"{where}: op {rule.op!r} on text column {rule.column}; expected == or !=")
        if rule.aggregate not in ("any", "all"):
            raise ConfigError(f"{where}: aggregate {rule.aggregate!r} on text column {rule.column}; expected any or all")


def load_rules(path: str | Path) -> list[ExclusionRule]:
    """Exclusion rules from a YAML or JSON file (JSON is read as YAML; duplicate keys are errors)."""
    from two4two.config import read_yaml

    return parse_rules(read_yaml(path, "rules file"), str(path))


@dataclass(frozen=True)
class RuleCount:
    """How many participants and answers one rule matches (each rule counted on the full data)."""

    rule: ExclusionRule
    participants: int
    answers: int


@dataclass
class Exclusions:
    counts: list[RuleCount]
    participant_reasons: dict[str, list[str]]  # excluded participant -> rule names
    answer_reasons: dict[tuple[str, str], list[str]]  # (participant, attribute) -> rule names
    kept: list[Response]  # answers that enter the analysis
    collected: int = 0  # participants in the file

    @property
    def excluded_participants(self) -> int:
        return len(self.participant_reasons)

    @property
    def excluded_answers(self) -> int:
        """Answers dropped by answer rules from participants who were kept."""
        return sum(1 for pid, _ in self.answer_reasons if pid not in self.participant_reasons)

    def format(self) -> str:
        lines = []
        for c in self.counts:
            what = f"{c.participants} participant(s)" if c.rule.scope == "participant" else f"{c.answers} answer(s)"
            lines.append(f"  {c.rule.name} ({c.rule.describe()}): {what}")
        empty = sum(1 for reasons in self.participant_reasons.values() if reasons == [NO_ANSWERS_LEFT])
        if empty:
            lines.append(f"  {NO_ANSWERS_LEFT}: {empty} participant(s)")
        lines.append(
            f"  in total: {self.excluded_participants} of {self.collected} participants excluded; "
            f"{self.excluded_answers} answers dropped from the others; {len(self.kept)} answers analysed"
        )
        return "\n".join(lines)


NO_ANSWERS_LEFT = "no_answers_left"


def apply_exclusions(responses: Sequence[Response], rules: Sequence[ExclusionRule]) -> Exclusions:
    participants = _by_participant(responses)
    participant_reasons: dict[str, list[str]] = {}
    answer_reasons: dict[tuple[str, str], list[str]] = {}
    counts = []
    for rule in rules:
        n_participants = n_answers = 0
        if rule.scope == "participant":
            for pid, own in participants.items():
                if rule.excludes_participant(own):
                    participant_reasons.setdefault(pid, []).append(rule.name)
                    n_participants += 1
                    n_answers += len(own)
        else:
            for r in responses:
                if rule.holds_for(r):
                    answer_reasons.setdefault((r.participant_id, r.attribute), []).append(rule.name)
                    n_answers += 1
        counts.append(RuleCount(rule, n_participants, n_answers))
    for pid, own in participants.items():
        if pid not in participant_reasons and all((pid, r.attribute) in answer_reasons for r in own):
            participant_reasons[pid] = [NO_ANSWERS_LEFT]
    kept = [
        r
        for r in responses
        if r.participant_id not in participant_reasons and (r.participant_id, r.attribute) not in answer_reasons
    ]
    return Exclusions(counts, participant_reasons, answer_reasons, kept, len(participants))


# ---------------------------------------------------------------- statistics


@dataclass
class TestResult:
    """One hypothesis test as reported in tests.json (statistic and p straight from scipy/statsmodels)."""

    __test__ = False  # not a pytest class

    test: str  # shapiro | kruskal | mannwhitneyu | fisher_exact | mcnemar
    comparison: str  # human-readable, e.g. "counterfactual vs baseline: accuracy"
    n: int
    statistic: float | None = None
    p: float | None = None
    p_corrected: float | None = None
    correction: str = "none"
    p_holm: float | None = None  # Holm over the paper's family (Kruskal–Wallis, Mann–Whitney, per-attribute)
    effect_size_r: float | None = None
    alternative: str = "two-sided"
    condition: str | None = None
    versus: str | None = None  # the other condition, or the reference attribute (McNemar)
    attribute: str | None = None
    skipped: str | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: _json_number(v) for k, v in self.__dict__.items()}


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    return value


def effect_size_r(p_two_sided: float, n: int, direction: float) -> float:
    """Effect size r = Z / sqrt(N) (Rosenthal), with Z = norm.isf(p / 2) from a two-sided p.

    For scipy's asymptotic Mann–Whitney U this Z is exactly |Z| of U's normal approximation
    (tie- and continuity-corrected); for an exact test it is the Z an equally small p would
    have. Z comes from the two-sided p even when the reported test is one-sided, so an
    effect's size does not depend on the hypothesised direction. The sign is the direction
    of the data (positive: the condition, or the compared attribute, is more accurate).
    N is the number of participants in the test.
    """
    from scipy.stats import norm

    if n <= 0 or direction == 0:
        return 0.0 if n > 0 else float("nan")
    z = norm.isf(max(float(p_two_sided), np.finfo(float).tiny) / 2)
    return float(np.sign(direction) * z / math.sqrt(n)) + 0.0  # + 0.0: no -0.0 when p = 1


@dataclass
class ConditionRow:
    """One row of the paper's Table 2."""

    condition: str
    n_collected: int
    n_filtered: int
    overall: float  # mean per-participant accuracy, %
    attribute_percent: dict[str, float]
    attribute_n: dict[str, int]
    overall_p: float | None = None  # corrected p of the condition's Mann–Whitney test against baseline
    attribute_p: dict[str, float | None] = field(default_factory=dict)  # Holm-corrected per-attribute p


@dataclass
class ParticipantAccuracy:
    participant_id: str
    condition: str
    answers: int
    correct: int
    included: bool
    excluded_by: list[str]

    @property
    def accuracy(self) -> float:
        return self.correct / self.answers if self.answers else float("nan")


@dataclass
class StudyAnalysis:
    source: str
    rules: list[ExclusionRule]
    exclusions: Exclusions
    conditions: list[str]
    baseline: str | None
    reference_attribute: str
    participants: list[ParticipantAccuracy]
    rows: list[ConditionRow]
    tests: list[TestResult]

    def accuracies(self, condition: str) -> np.ndarray:
        return np.array([p.accuracy for p in self.participants if p.included and p.condition == condition])

    # ---- reports

    def format_table(self) -> str:
        """Markdown table like the paper's Table 2 (% correct, answers counted in parentheses)."""
        head = ["Condition", "N collected", "N filtered", "Overall"] + [BY_NAME[a].short for a in ATTRIBUTES]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            cells = [row.condition, str(row.n_collected), str(row.n_filtered), _stars(row.overall_p) + _pct(row.overall)]
            for a in ATTRIBUTES:
                cells.append(f"{_stars(row.attribute_p.get(a))}{_pct(row.attribute_percent[a])} ({row.attribute_n[a]})")
            lines.append("| " + " | ".join(cells) + " |")
        note = "Percent correct (answers counted). Overall: mean per-participant accuracy. "
        if self.baseline:
            note += (
                f"Stars against the {self.baseline} condition: overall by Mann–Whitney U (Bonferroni-corrected), "
                "attributes by Fisher's exact test (Holm-corrected); * p < 0.05, ** p < 0.01, *** p < 0.001."
            )
        else:
            note += "No baseline condition, so no stars; the tests below compare every pair of conditions."
        lines += ["", note]
        return "\n".join(lines)

    def format_tests(self) -> str:
        head = ["test", "comparison", "N", "statistic", "p", "corrected p", "correction", "r"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in self.tests:
            if t.skipped:
                cells = [t.test, t.comparison, str(t.n), f"skipped: {t.skipped}", "", "", "", ""]
            else:
                cells = [
                    t.test,
                    t.comparison + ("" if t.alternative == "two-sided" else f" ({t.alternative})"),
                    str(t.n),
                    _num(t.statistic),
                    _p(t.p),
                    _p(t.p_corrected),
                    t.correction,
                    _num(t.effect_size_r),
                ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def markdown(self) -> str:
        return (
            f"# Study analysis of {self.source}\n\n## Exclusions\n\n{self.exclusions.format()}\n\n"
            f"## Accuracy (like the paper's Table 2)\n\n{self.format_table()}\n\n## Tests\n\n{self.format_tests()}\n"
        )

    def table_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        head = ["condition", "n_collected", "n_filtered", "overall_percent", "overall_p_corrected"]
        for a in ATTRIBUTES:
            head += [f"{a}_percent", f"{a}_n", f"{a}_p_holm"]
        writer.writerow(head)
        for row in self.rows:
            cells = [row.condition, row.n_collected, row.n_filtered, _csv_num(row.overall), _csv_num(row.overall_p)]
            for a in ATTRIBUTES:
                cells += [_csv_num(row.attribute_percent[a]), row.attribute_n[a], _csv_num(row.attribute_p.get(a))]
            writer.writerow(cells)
        return buf.getvalue()

    def participants_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["participant_id", "condition", "answers", "correct", "accuracy", "included", "excluded_by"])
        for p in self.participants:
            writer.writerow(
                [p.participant_id, p.condition, p.answers, p.correct, _csv_num(p.accuracy), p.included, ";".join(p.excluded_by)]
            )
        return buf.getvalue()

    def to_json(self) -> str:
        ex = self.exclusions
        doc = {
            "source": self.source,
            "conditions": self.conditions,
            "baseline_condition": self.baseline,
            "reference_attribute": self.reference_attribute,
            "exclusions": {
                "rules": [
                    {**c.rule.to_dict(), "participants_matched": c.participants, "answers_matched": c.answers}
                    for c in ex.counts
                ],
                "participants_collected": len(self.participants),
                "participants_excluded": ex.excluded_participants,
                "participants_kept": sum(p.included for p in self.participants),
                "answers_excluded_from_kept_participants": ex.excluded_answers,
                "answers_kept": len(ex.kept),
            },
            "table": [_json_number({**row.__dict__}) for row in self.rows],
            "tests": [t.to_dict() for t in self.tests],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    def figure_png(self) -> bytes:
        """Like the paper's Figure 4: share of participants per number of correct answers, per condition."""
        from two4two.plotting import pyplot

        plt = pyplot()
        k = len(ATTRIBUTES)
        xs = np.arange(k + 1)
        fig, ax = plt.subplots(figsize=(6.0, 3.2))
        width = 0.8 / max(1, len(self.conditions))
        colours = plt.get_cmap("tab10")
        for i, condition in enumerate(self.conditions):
            acc = self.accuracies(condition)
            # With answer rules a participant may have fewer than k answers: scale to k.
            counts = np.bincount(np.rint(acc * k).astype(int), minlength=k + 1) if len(acc) else np.zeros(k + 1)
            share = counts / max(1, len(acc))
            ax.bar(xs + (i - (len(self.conditions) - 1) / 2) * width, share, width, label=f"{condition} (N={len(acc)})", color=colours(i))
        ax.set_xticks(xs)
        ax.set_xlabel("# correct")
        ax.set_ylabel("proportion of participants")
        ax.legend(fontsize=8, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        fig.suptitle("Correct answers per participant", fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        return buf.getvalue()


def _pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.1f}"


def _num(x: float | None) -> str:
    if x is None or math.isnan(x):
        return ""
    return f"{x:.3f}" if math.isfinite(x) else str(x)


def _p(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return "< 0.0001" if x < 1e-4 else f"{x:.4f}"


def _csv_num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def _stars(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def analyze(
    responses: Sequence[Response],
    rules: Sequence[ExclusionRule] = DEFAULT_RULES,
    baseline: str = "baseline",
    reference_attribute: str = "legs",
    expect: Mapping[str, str] | None = None,
    source: str = "<responses>",
) -> StudyAnalysis:
    """Exclusions, Table 2, and every test. expect maps a condition to "greater" or "less":
    a pre-registered direction against the baseline (the paper: counterfactual greater,
    concepts less), making that condition's Mann–Whitney and Fisher tests one-sided."""
    if reference_attribute not in ATTRIBUTES:
        raise ResponsesError(f"reference attribute {reference_attribute!r} is not allowed; expected one of {', '.join(ATTRIBUTES)}")
    try:
        import statsmodels  # noqa: F401  (McNemar and the multiple-test corrections)
    except ImportError:
        raise Two4TwoError("the study analysis needs statsmodels: pip install -e '.[study]'") from None
    check_design(responses, source)
    rules = list(rules)
    exclusions = apply_exclusions(responses, rules)
    conditions = list(dict.fromkeys(r.condition for r in responses))
    if baseline in conditions:  # the baseline first, the others in order of appearance
        conditions.insert(0, conditions.pop(conditions.index(baseline)))
    has_baseline = baseline in conditions
    expect = dict(expect or {})
    for condition, alternative in expect.items():
        if condition not in conditions or condition == baseline or not has_baseline:
            allowed = ", ".join(conditions[1:]) if has_baseline else "none (no baseline condition)"
            raise ResponsesError(f"expected direction for condition {condition!r}: not a compared condition; allowed: {allowed}")
        if alternative not in ("greater", "less"):
            raise ResponsesError(f"expected direction {alternative!r} for {condition!r} is not allowed; expected greater or less")

    participants = _participant_accuracies(responses, exclusions)
    accuracies = {
        c: np.array([p.accuracy for p in participants if p.included and p.condition == c]) for c in conditions
    }
    correct: dict[tuple[str, str], dict[str, bool]] = {}  # (condition, attribute) -> participant -> correct
    for r in exclusions.kept:
        correct.setdefault((r.condition, r.attribute), {})[r.participant_id] = r.correct

    pairs = [(c, baseline) for c in conditions[1:]] if has_baseline else list(itertools.combinations(conditions, 2))
    tests = [_shapiro(c, accuracies[c]) for c in conditions]
    tests += _between_conditions(accuracies, correct, pairs, expect)
    for condition in conditions:
        tests += _mcnemar_within(condition, correct, reference_attribute)
    rows = _table_rows(responses, participants, correct, conditions, tests if has_baseline else [])
    return StudyAnalysis(
        source, rules, exclusions, conditions, baseline if has_baseline else None, reference_attribute, participants, rows, tests
    )


def _participant_accuracies(responses: Sequence[Response], exclusions: Exclusions) -> list[ParticipantAccuracy]:
    """Accuracy over the answers that the answer rules keep (also shown for excluded participants)."""
    out = []
    for pid, own in _by_participant(responses).items():
        answers = [r for r in own if (pid, r.attribute) not in exclusions.answer_reasons]
        reasons = list(exclusions.participant_reasons.get(pid, []))
        out.append(ParticipantAccuracy(pid, own[0].condition, len(answers), sum(r.correct for r in answers), not reasons, reasons))
    return out


def _shapiro(condition: str, acc: np.ndarray) -> TestResult:
    """Shapiro–Wilk: the paper's reason for rank tests."""
    from scipy import stats

    t = TestResult("shapiro", f"{condition}: accuracy normal?", len(acc), condition=condition)
    if len(acc) < 3:
        t.skipped = "needs at least 3 participants"
    elif np.ptp(acc) == 0:
        t.skipped = "all accuracies are equal"
    else:
        res = stats.shapiro(acc)
        t.statistic, t.p = float(res.statistic), float(res.pvalue)
    return t


def _between_conditions(
    accuracies: Mapping[str, np.ndarray],
    correct: Mapping[tuple[str, str], Mapping[str, bool]],
    pairs: Sequence[tuple[str, str]],
    expect: Mapping[str, str],
) -> list[TestResult]:
    """Kruskal–Wallis, then Mann–Whitney U per pair (Bonferroni), then Fisher per attribute and pair;
    Holm over all of them (the paper's footnote 1)."""
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    groups = [g for g in accuracies.values() if len(g)]
    kw = TestResult("kruskal", "accuracy across " + ", ".join(accuracies), int(sum(map(len, groups))))
    if len(groups) < 2:
        kw.skipped = "needs at least 2 conditions with participants"
    elif np.ptp(np.concatenate(groups)) == 0:
        kw.skipped = "all accuracies are equal"
    else:
        res = stats.kruskal(*groups)
        kw.statistic, kw.p = float(res.statistic), float(res.pvalue)
        kw.details = {"groups": {c: len(g) for c, g in accuracies.items()}}

    pairwise = []
    for condition, other in pairs:
        x, y = accuracies[condition], accuracies[other]
        alternative = expect.get(condition, "two-sided")
        t = TestResult("mannwhitneyu", f"{condition} vs {other}: accuracy", len(x) + len(y), alternative=alternative, condition=condition, versus=other)
        if not len(x) or not len(y):
            t.skipped = "a condition has no participants"
        elif np.ptp(np.concatenate([x, y])) == 0:
            t.skipped = "all accuracies are equal"
        else:
            res = stats.mannwhitneyu(x, y, alternative=alternative)
            t.statistic, t.p = float(res.statistic), float(res.pvalue)
            two_sided = res.pvalue if alternative == "two-sided" else stats.mannwhitneyu(x, y).pvalue
            t.effect_size_r = effect_size_r(two_sided, t.n, t.statistic - len(x) * len(y) / 2)
            t.details = {"n": len(x), "n_versus": len(y), "mean_accuracy": float(x.mean()), "mean_accuracy_versus": float(y.mean())}
        pairwise.append(t)
    _correct(pairwise, "bonferroni", multipletests, store="p_corrected")

    per_attribute = []
    for condition, other in pairs:
        alternative = expect.get(condition, "two-sided")
        for a in ATTRIBUTES:
            x, y = correct.get((condition, a), {}), correct.get((other, a), {})
            t = TestResult(
                "fisher_exact", f"{condition} vs {other}: {a}", len(x) + len(y),
                alternative=alternative, condition=condition, versus=other, attribute=a,
            )
            if not x or not y:
                t.skipped = "a condition has no answers"
            else:
                table = [[sum(x.values()), len(x) - sum(x.values())], [sum(y.values()), len(y) - sum(y.values())]]
                res = stats.fisher_exact(table, alternative=alternative)
                t.statistic, t.p = float(res.statistic), float(res.pvalue)
                two_sided = res.pvalue if alternative == "two-sided" else stats.fisher_exact(table).pvalue
                t.effect_size_r = effect_size_r(two_sided, t.n, table[0][0] / len(x) - table[1][0] / len(y))
                t.details = {"table": table, "statistic_is": "odds ratio (rows: condition, versus; columns: correct, wrong)"}
            per_attribute.append(t)

    family = [kw] + pairwise + per_attribute
    _correct(family, "holm", multipletests, store="p_holm")
    label = f"holm over {sum(t.p is not None for t in family)} tests (Kruskal–Wallis, Mann–Whitney U, per attribute)"
    for t in [kw] + per_attribute:
        if t.p is not None:
            t.p_corrected, t.correction = t.p_holm, label
    return family


def _mcnemar_within(condition: str, correct: Mapping[tuple[str, str], Mapping[str, bool]], reference: str) -> list[TestResult]:
    """Exact two-sided McNemar of the reference attribute against each other one, on the same participants."""
    from statsmodels.stats.contingency_tables import mcnemar
    from statsmodels.stats.multitest import multipletests

    ref = correct.get((condition, reference), {})
    family = []
    for a in ATTRIBUTES:
        if a == reference:
            continue
        other = correct.get((condition, a), {})
        both = [pid for pid in ref if pid in other]
        t = TestResult("mcnemar", f"{condition}: {a} vs {reference}", len(both), condition=condition, versus=reference, attribute=a)
        if not both:
            t.skipped = "no participant answered both"
        else:
            table = [
                [sum(ref[p] and other[p] for p in both), sum(ref[p] and not other[p] for p in both)],
                [sum(not ref[p] and other[p] for p in both), sum(not ref[p] and not other[p] for p in both)],
            ]
            res = mcnemar(table, exact=True)
            t.statistic, t.p = float(res.statistic), float(res.pvalue)
            t.effect_size_r = effect_size_r(t.p, t.n, table[1][0] - table[0][1])
            t.details = {"table": table, "statistic_is": "smaller discordant count (rows: reference correct, wrong; columns: attribute correct, wrong)"}
        family.append(t)
    _correct(family, "holm", multipletests, store="p_corrected")
    return family


ALL_CONDITIONS = "all conditions"


def _table_rows(
    responses: Sequence[Response],
    participants: Sequence[ParticipantAccuracy],
    correct: Mapping[tuple[str, str], Mapping[str, bool]],
    conditions: Sequence[str],
    tests: Sequence[TestResult],
) -> list[ConditionRow]:
    """The paper's Table 2: one row per condition (and all together), starred by the tests against the baseline."""
    collected = _by_participant(responses)
    groupings = [(c, {c}) for c in conditions] + ([(ALL_CONDITIONS, set(conditions))] if len(conditions) > 1 else [])
    rows = []
    for label, members in groupings:
        acc = np.array([p.accuracy for p in participants if p.included and p.condition in members])
        percent, n = {}, {}
        for a in ATTRIBUTES:
            answers = [ok for c in members for ok in correct.get((c, a), {}).values()]
            n[a] = len(answers)
            percent[a] = 100.0 * float(np.mean(answers)) if answers else float("nan")
        n_collected = sum(1 for own in collected.values() if own[0].condition in members)
        mean = 100.0 * float(acc.mean()) if len(acc) else float("nan")
        row = ConditionRow(label, n_collected, len(acc), mean, percent, n)
        for t in tests:
            if t.condition == label and t.test == "mannwhitneyu":
                row.overall_p = t.p_corrected
            if t.condition == label and t.test == "fisher_exact":
                row.attribute_p[t.attribute] = t.p_holm
        rows.append(row)
    return rows


def _correct(family: list[TestResult], method: str, multipletests, store: str) -> None:
    """Fill corrected p-values (statsmodels multipletests) for the tests of a family that ran."""
    ran = [t for t in family if t.p is not None]
    if not ran:
        return
    corrected = multipletests([t.p for t in ran], method=method)[1]
    for t, p in zip(ran, corrected):
        setattr(t, store, float(p))
        if store == "p_corrected":
            t.correction = f"{method} over {len(ran)} tests"


# ---------------------------------------------------------------- outputs

OUTPUT_FILES = {
    "markdown": "table.md",
    "table": "table.csv",
    "participants": "participants.csv",
    "tests": "tests.json",
    "figure": "correct_answers.png",
}


def write_outputs(analysis: StudyAnalysis, out_dir: str | Path) -> dict[str, Path]:
    """Table (markdown, CSV), per-participant accuracy, tests JSON and the figure into out_dir."""
    out_dir = Path(out_dir)
    contents = {
        "markdown": analysis.markdown().encode(),
        "table": analysis.table_csv().encode(),
        "participants": analysis.participants_csv().encode(),
        "tests": analysis.to_json().encode(),
        "figure": analysis.figure_png(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / OUTPUT_FILES[key] for key in contents}
    atomic_write_files({paths[key]: data for key, data in contents.items()})
    return paths


def analyze_file(
    path: str | Path,
    rules_path: str | Path | None = None,
    baseline: str = "baseline",
    reference_attribute: str = "legs",
    expect: Mapping[str, str] | None = None,
) -> StudyAnalysis:
    rules = load_rules(rules_path) if rules_path else list(DEFAULT_RULES)
    return analyze(read_responses(path), rules, baseline, reference_attribute, expect, source=str(path))


# ---------------------------------------------------------------- synthetic responses

# The paper's Table 2 (study 2), percent correct per attribute; used to simulate plausible answers.
PAPER_ACCURACY = {
    "baseline": {"legs": 85.9, "colour": 59.2, "background": 95.8, "shape": 93.0, "rotation_bending": 70.4},
    "counterfactual": {"legs": 100.0, "colour": 82.3, "background": 79.0, "shape": 90.3, "rotation_bending": 71.0},
    "concepts": {"legs": 45.8, "colour": 32.2, "background": 18.6, "shape": 32.2, "rotation_bending": 32.2},
}


def simulate_responses(
    n_per_condition: int = 30,
    seed: int = 0,
    accuracy: Mapping[str, Mapping[str, float]] = PAPER_ACCURACY,
    comprehension_failure_rate: float = 0.1,
    rusher_rate: float = 0.05,
) -> list[Response]:
    """Synthetic responses in the study app's format, to try the analysis.

    Each participant answers each attribute correctly with the given percentage; a share fails
    the comprehension checks twice and a share rushes through (a few seconds per page), so
    the default exclusion rules have something to exclude.
    """
    if n_per_condition < 1:
        raise Two4TwoError(f"participants per condition {n_per_condition} is not allowed; expected at least 1")
    rng = np.random.default_rng(seed)
    out = []
    index = 0
    for condition, percents in accuracy.items():
        for _ in range(n_per_condition):
            index += 1
            pid = f"P{index:04d}"
            failures = 2 if rng.random() < comprehension_failure_rate else int(rng.random() < 0.2)
            rushing = rng.random() < rusher_rate
            for a in ATTRIBUTES:
                expected = BY_NAME[a].paper_answer
                is_correct = rng.random() < percents[a] / 100.0
                answer = expected if is_correct else ANSWERS[1 - ANSWERS.index(expected)]
                seconds = float(rng.uniform(1, 4) if rushing else rng.lognormal(math.log(40), 0.5))
                why = f'The {a} "looked {"different" if answer == "relevant" else "the same"}" across columns, so {answer}.'
                out.append(Response(pid, condition, a, answer, expected, round(seconds, 1), failures, why))
    return out


__all__ = [
    "ATTRIBUTES",
    "COLUMNS",
    "DEFAULT_RULES",
    "ExclusionRule",
    "Response",
    "StudyAnalysis",
    "TestResult",
    "analyze",
    "analyze_file",
    "apply_exclusions",
    "effect_size_r",
    "load_rules",
    "parse_responses",
    "parse_rules",
    "read_responses",
    "simulate_responses",
    "write_outputs",
    "write_responses",
]
