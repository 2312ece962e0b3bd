"""Exclusion rules as data (YAML or JSON, see configs/study_exclusions.yaml) and applying them."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from two4two.errors import ConfigError
from two4two.schema import Fields
from two4two.study.responses import COLUMNS, NUMERIC_COLUMNS, Response, _by_participant

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
        if self.aggregate in ("any", "all"):
            return (any if self.aggregate == "any" else all)(self.holds_for(r) for r in rows)
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
        fields = Fields(item, source, f"rules[{i}]", allowed=RULE_KEYS, required=("name", "column", "op", "value"),
                        what=f"a mapping with keys {', '.join(RULE_KEYS)}")
        rule = ExclusionRule(**{"scope": "participant", "aggregate": "any", **item})
        fields.text("name")
        fields.choice("column", COLUMNS)
        fields.choice("op", OPERATORS)
        fields.choice("scope", SCOPES, rule.scope)
        fields.choice("aggregate", AGGREGATES, rule.aggregate)
        fields.check(rule.scope == "participant" or rule.aggregate == "any", "aggregate",
                     "any, or scope participant (an answer rule tests one row)")
        if rule.column in NUMERIC_COLUMNS:
            fields.number("value", expected=f"a number for column {rule.column}")
        else:
            fields.check(isinstance(rule.value, str), "value", f"text for column {rule.column}")
            fields.check(rule.op in ("==", "!="), "op", f"== or != on text column {rule.column}")
            fields.check(rule.aggregate in ("any", "all"), "aggregate", f"any or all on text column {rule.column}")
        if rule.name in names:
            raise fields.fail("name", "a name no earlier rule uses")
        names.add(rule.name)
        rules.append(rule)
    return rules


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
