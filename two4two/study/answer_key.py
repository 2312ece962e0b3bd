"""The study's answer key, derived from what the model was measured to rely on.

Participants judge whether each of five attributes is relevant for the model. The right
answer is not what the data was biased on but what the model uses, which
`two4two.importance` measures by intervention. An attribute is *relevant* when the lower
end of its 95 % interval on the chosen measure lies above the upper end of every
*reference* attribute's interval plus a margin. The reference attributes are irrelevant by
construction: drawn independently of the class in every split, and not asked about
(position x and y by default), so their importance is what noise and nuisance
sensitivity look like for this model. A question covering several attributes (rotation
and bending) is relevant when any of them is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

from two4two.errors import ConfigError
from two4two.schema import Fields
from two4two.study.questions import QUESTIONS

MEASURES = ("r_squared", "flip_percent", "median_abs_delta_logit", "mean_abs_delta_logit")


@dataclass(frozen=True)
class AnswerKeyRule:
    measure: str = "r_squared"
    reference: tuple[str, ...] = ("position_x", "position_y")
    margin: float = 0.05  # in the measure's units (R²: 0.05; flip %: percentage points)

    def __post_init__(self):
        if self.measure not in MEASURES:
            raise ConfigError(f"answer_key.measure: {self.measure!r} is not one of {', '.join(MEASURES)}")
        if not self.reference:
            raise ConfigError("answer_key.reference: needs at least one attribute that is irrelevant by construction")
        asked = {a for q in QUESTIONS for a in q.attributes}
        overlap = sorted(set(self.reference) & asked)
        if overlap:
            raise ConfigError(f"answer_key.reference: {', '.join(overlap)} is asked about in the study and cannot be a reference")
        if not self.margin >= 0:
            raise ConfigError(f"answer_key.margin: {self.margin!r} must be a number ≥ 0")

    @classmethod
    def from_mapping(cls, data: Mapping | None, source: str = "<config>") -> "AnswerKeyRule":
        fields = Fields(dict(data or {}), source, "answer_key", allowed=("measure", "reference", "margin"))
        rule = dict(fields.raw)
        if "reference" in rule:
            rule["reference"] = tuple(fields.items("reference"))
        if "margin" in rule:
            fields.number("margin", low=0)
        return cls(**rule)


@dataclass
class AnswerKey:
    answers: dict[str, str]  # question -> "relevant" | "irrelevant"
    rule: AnswerKeyRule
    threshold: float  # a question's attribute is relevant when its interval's lower end exceeds this
    evidence: dict[str, list[dict]] = field(default_factory=dict)  # question -> per attribute value and interval

    def to_dict(self) -> dict:
        return {"answers": self.answers, "rule": {**asdict(self.rule), "reference": list(self.rule.reference)},
                "threshold": self.threshold, "evidence": self.evidence}

    def format_table(self) -> str:
        lines = [f"Answer key: relevant when the lower 95 % bound of {self.rule.measure} exceeds {self.threshold:.4g} "
                 f"(max upper bound of {', '.join(self.rule.reference)} + margin {self.rule.margin:g})"]
        for question, answer in self.answers.items():
            parts = ", ".join(f"{e['attribute']} {e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]" for e in self.evidence[question])
            lines.append(f"  {question:<17} {answer:<10} {parts}")
        return "\n".join(lines)


def derive_answer_key(importance, rule: AnswerKeyRule | None = None) -> AnswerKey:
    """The answer key of an `ImportanceResult` (which must cover the asked and the reference attributes)."""
    rule = rule or AnswerKeyRule()
    rows = {r.attribute: getattr(r, rule.measure) for r in importance.rows}
    needed = [a for a in (*rule.reference, *(a for q in QUESTIONS for a in q.attributes)) if a not in rows]
    if needed:
        raise ConfigError(
            f"answer key: the importance measurement has no {', '.join(needed)}; measure every asked attribute and "
            f"the references (intervention splits of the dataset)"
        )
    threshold = max(rows[a].high for a in rule.reference) + rule.margin
    answers, evidence = {}, {}
    for q in QUESTIONS:
        evidence[q.name] = [{"attribute": a, "value": rows[a].value, "low": rows[a].low, "high": rows[a].high} for a in q.attributes]
        answers[q.name] = "relevant" if any(rows[a].low > threshold for a in q.attributes) else "irrelevant"
    evidence["reference"] = [{"attribute": a, "value": rows[a].value, "low": rows[a].low, "high": rows[a].high} for a in rule.reference]
    return AnswerKey(answers, rule, threshold, evidence)
