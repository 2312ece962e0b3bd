"""The 2022 study's analysis (Sixt et al. 2022, sections 5.2–5.3, Table 2, Figure 4): the paper's
tests on the kept answers and the tables and figure they make up. Participants rate five attributes
as relevant or irrelevant; the share they rate correctly is their accuracy. Its pieces: `responses`
(the CSV format, design checks), `exclusions` (rules as data), this module, and `simulate`
(responses with planted effects); docs/guides/studies.md ("User-study statistics") documents them."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from two4two.errors import ResponsesError, Two4TwoError
from two4two.intervals import markdown_table
from two4two.study.exclusions import DEFAULT_RULES, ExclusionRule, Exclusions, apply_exclusions
from two4two.study.questions import BY_NAME
from two4two.study.responses import ATTRIBUTES, Response, _by_participant, check_design, csv_text, write_outputs


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
        return _accuracies(self.participants, {condition})

    # ---- reports

    def format_table(self) -> str:
        """Markdown table like the paper's Table 2 (% correct, answers counted in parentheses)."""
        head = ["Condition", "N collected", "N filtered", "Overall"] + [BY_NAME[a].short for a in ATTRIBUTES]
        rows = ([row.condition, str(row.n_collected), str(row.n_filtered), _stars(row.overall_p) + _pct(row.overall),
                 *(f"{_stars(row.attribute_p.get(a))}{_pct(row.attribute_percent[a])} ({row.attribute_n[a]})"
                   for a in ATTRIBUTES)] for row in self.rows)
        note = "Percent correct (answers counted). Overall: mean per-participant accuracy. "
        if self.baseline:
            note += (
                f"Stars against the {self.baseline} condition: overall by Mann–Whitney U (Bonferroni-corrected), "
                "attributes by Fisher's exact test (Holm-corrected); * p < 0.05, ** p < 0.01, *** p < 0.001."
            )
        else:
            note += "No baseline condition, so no stars; the tests below compare every pair of conditions."
        return markdown_table(head, rows) + "\n\n" + note

    def format_tests(self) -> str:
        head = ["test", "comparison", "N", "statistic", "p", "corrected p", "correction", "r"]
        rows = []
        for t in self.tests:
            if t.skipped:
                rows.append([t.test, t.comparison, str(t.n), f"skipped: {t.skipped}", "", "", "", ""])
            else:
                rows.append([
                    t.test,
                    t.comparison + ("" if t.alternative == "two-sided" else f" ({t.alternative})"),
                    str(t.n),
                    _num(t.statistic),
                    _p(t.p),
                    _p(t.p_corrected),
                    t.correction,
                    _num(t.effect_size_r),
                ])
        return markdown_table(head, rows)

    def markdown(self) -> str:
        return (
            f"# Study analysis of {self.source}\n\n## Exclusions\n\n{self.exclusions.format()}\n\n"
            f"## Accuracy (like the paper's Table 2)\n\n{self.format_table()}\n\n## Tests\n\n{self.format_tests()}\n"
        )

    def table_csv(self) -> str:
        head = ["condition", "n_collected", "n_filtered", "overall_percent", "overall_p_corrected"]
        head += [f"{a}_{column}" for a in ATTRIBUTES for column in ("percent", "n", "p_holm")]
        rows = [[row.condition, row.n_collected, row.n_filtered, _csv_num(row.overall), _csv_num(row.overall_p)]
                + [cell for a in ATTRIBUTES for cell in
                   (_csv_num(row.attribute_percent[a]), row.attribute_n[a], _csv_num(row.attribute_p.get(a)))]
                for row in self.rows]
        return csv_text(head, rows)

    def participants_csv(self) -> str:
        head = ["participant_id", "condition", "answers", "correct", "accuracy", "included", "excluded_by"]
        return csv_text(head, ([p.participant_id, p.condition, p.answers, p.correct, _csv_num(p.accuracy), p.included,
                                ";".join(p.excluded_by)] for p in self.participants))

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

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Table (Markdown, CSV), per-participant accuracy, tests JSON and the figure into out_dir, all or nothing."""
        return write_outputs(out_dir, {
            "markdown": ("table.md", self.markdown().encode()), "table": ("table.csv", self.table_csv().encode()),
            "participants": ("participants.csv", self.participants_csv().encode()),
            "tests": ("tests.json", self.to_json().encode()), "figure": ("correct_answers.png", self.figure_png())})

    def figure_png(self) -> bytes:
        """Like the paper's Figure 4: share of participants per number of correct answers, per condition."""
        from two4two.plotting import figure_png, pyplot

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
        return figure_png(fig)


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
    accuracies = {c: _accuracies(participants, {c}) for c in conditions}
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


def _accuracies(participants: Sequence[ParticipantAccuracy], conditions: set[str]) -> np.ndarray:
    """The accuracies of the included participants of these conditions."""
    return np.array([p.accuracy for p in participants if p.included and p.condition in conditions])


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
    _correct(pairwise, "bonferroni", store="p_corrected")

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
    _correct(family, "holm", store="p_holm")
    label = f"holm over {sum(t.p is not None for t in family)} tests (Kruskal–Wallis, Mann–Whitney U, per attribute)"
    for t in [kw] + per_attribute:
        if t.p is not None:
            t.p_corrected, t.correction = t.p_holm, label
    return family


def _mcnemar_within(condition: str, correct: Mapping[tuple[str, str], Mapping[str, bool]], reference: str) -> list[TestResult]:
    """Exact two-sided McNemar of the reference attribute against each other one, on the same participants."""
    from statsmodels.stats.contingency_tables import mcnemar

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
    _correct(family, "holm", store="p_corrected")
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
        acc = _accuracies(participants, members)
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


def _correct(family: list[TestResult], method: str, store: str) -> None:
    """Fill corrected p-values (statsmodels multipletests) for the tests of a family that ran."""
    from statsmodels.stats.multitest import multipletests

    ran = [t for t in family if t.p is not None]
    if not ran:
        return
    corrected = multipletests([t.p for t in ran], method=method)[1]
    for t, p in zip(ran, corrected):
        setattr(t, store, float(p))
        if store == "p_corrected":
            t.correction = f"{method} over {len(ran)} tests"
