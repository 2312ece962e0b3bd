"""Analysis of the trial paradigms, with each paper's statistics, and simulated participants.

Input: the trial responses CSV `study responses` writes (one row per trial step) and the bundle
it came from (its facts: the AI-alone baseline, the bins' shares). Answers faster than the
bundle's `too_fast_seconds` are excluded unless asked otherwise, and counted. "Study paradigms"
in docs/guides/studies.md names each paradigm's measures and tests (every family Holm-corrected).
`simulate_trial_responses` draws participants with the runner's own draw and answers with
planted effects, so the tests can check that each analysis finds what was planted.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from two4two.errors import Two4TwoError
from two4two.intervals import markdown_table
from two4two.study.bundle import Bundle
from two4two.study.paradigms import (
    ACCEPT_REJECT,
    DONT_KNOW,
    GUESS_OUTPUT,
    PROGRESSIVE_REVEAL,
    YES,
    draw_plan,
    response_row,
)
from two4two.study.responses import write_outputs

ALPHA = 0.05


class TrialAnalysisError(Two4TwoError, ValueError):
    """Responses that cannot be analysed as this bundle's paradigm."""


@dataclass
class Test:
    """One hypothesis test of a family; `p_holm` is filled once the family is complete."""

    name: str
    statistic: float
    p: float
    n: str  # sample sizes as printed
    effect: float | None = None  # difference of the compared accuracies (first − second)
    p_holm: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


def holm(tests: list[Test]) -> list[Test]:
    """Holm–Bonferroni over the tests that ran (statsmodels' multipletests)."""
    from statsmodels.stats.multitest import multipletests

    ran = [t for t in tests if not math.isnan(t.p)]
    if ran:
        for t, p in zip(ran, multipletests([t.p for t in ran], method="holm")[1]):
            t.p_holm = float(p)
    return tests


def read_trial_responses(path: str | Path):
    """The export's CSV as a pandas DataFrame with numeric columns typed."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise TrialAnalysisError(f"{path}: no such responses file (written by `two4two study responses`)")
    frame = pd.read_csv(path, keep_default_na=False)
    needed = {"participant_id", "condition", "trial", "group", "item", "answer", "correct_answer", "correct", "seconds", "too_fast"}
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise TrialAnalysisError(f"{path}: not a trial responses file; missing column(s) {', '.join(missing)}")
    for column in ("correct", "too_fast", "position", "step_index", "level", "seconds"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column])
    return frame


# ---------------------------------------------------------------- results


@dataclass
class TrialAnalysis:
    paradigm: str
    participants: int
    answers: int
    excluded_too_fast: int
    table: Any  # pandas DataFrame: the paradigm's main table
    tests: list[Test]
    summary: dict[str, Any] = field(default_factory=dict)
    per_participant: Any = None  # DataFrame (participant × measure), for resampling

    def markdown(self) -> str:
        rows = ([_fmt(v) if isinstance(v, float) else str(v) for v in r] for r in self.table.itertuples(index=False))
        out = [f"## {self.paradigm}: {self.participants} participants, {self.answers} answers "
               f"({self.excluded_too_fast} too fast, excluded)", "", markdown_table(self.table.columns, rows), ""]
        if self.summary:
            out += ["| measure | value |", "|---|---|"]
            for k, v in self.summary.items():
                if isinstance(v, list):
                    v = " > ".join(map(str, v))
                elif isinstance(v, dict):
                    v = ", ".join(f"{a} {_fmt(b)}" for a, b in v.items())
                out.append(f"| {k} | {_fmt(v)} |")
            out.append("")
        if self.tests:
            out += ["| test | statistic | n | effect | p | p (Holm) | significant |", "|---|---|---|---|---|---|---|"]
            out += [f"| {t.name} | {t.statistic:.3g} | {t.n} | {_fmt(t.effect)} | {t.p:.3g} | {_fmt(t.p_holm)} | "
                    f"{'yes' if t.significant else 'no'} |" for t in self.tests]
        return "\n".join(out) + "\n"

    def to_json(self) -> str:
        return json.dumps({"paradigm": self.paradigm, "participants": self.participants, "answers": self.answers,
                           "excluded_too_fast": self.excluded_too_fast, "summary": self.summary,
                           "table": json.loads(self.table.to_json(orient="records")),
                           "tests": [t.__dict__ | {"significant": t.significant} for t in self.tests]}, indent=2, default=float)

    def figure_png(self) -> bytes:
        from two4two.plotting import figure_png, pyplot

        plt = pyplot()
        t = self.table
        if self.paradigm == PROGRESSIVE_REVEAL:
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
            for method, rows in t.groupby("method", sort=False):
                axes[0].errorbar(rows["level"], rows["accuracy"], yerr=_error_bars(rows),
                                 marker="o", capsize=2, label=method)
                axes[1].plot(rows["level"], rows["median_seconds"], marker="o", label=method)
            for ax, label in zip(axes, ("accuracy (95 % CI)", "median reaction time (s)")):
                ax.set_xscale("log")
                ax.set_xticks(sorted(t["level"].unique()))
                ax.set_xticklabels([str(int(v)) for v in sorted(t["level"].unique())])
                ax.minorticks_off()
                ax.set_xlabel("% of pixels shown")
                ax.set_ylabel(label)
            axes[0].legend(fontsize=8)
            fig.suptitle("Progressive reveal: human accuracy and reaction time per method and level (Biessmann & Refiano 2021, Fig. 3)", fontsize=9)
        elif self.paradigm == ACCEPT_REJECT:
            fig, ax = plt.subplots(figsize=(10, 3.8))
            order = {"easy": 0, "medium": 1, "hard": 2}
            bins = sorted(dict.fromkeys(t["bin"]), key=lambda b: (order.get(b.split("_")[0], 3), b))
            centres = _grouped_bars(ax, t, "bin", bins)
            ai = self.summary.get("ai_alone_per_bin", {})
            if ai:
                ax.scatter(centres, [ai.get(b, np.nan) for b in bins], marker="_", s=600, color="k", label="AI alone", zorder=3)
            ax.set_ylabel("team accuracy (95 % CI)")
            ax.legend(fontsize=8, ncol=3)
            fig.suptitle("Accept or reject: human-AI team accuracy per difficulty bin (Nguyen et al. 2021, Fig. 2)", fontsize=9)
        else:
            fig, ax = plt.subplots(figsize=(7, 3.8))
            _grouped_bars(ax, t, "group", list(dict.fromkeys(t["group"])))
            ax.set_ylabel("guessing accuracy (95 % CI)")
            ax.legend(fontsize=8)
            fig.suptitle("Guess the model's output: accuracy with and without a map (Shen & Huang 2020, Table 1)", fontsize=9)
        return figure_png(fig)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """analysis.md, table.csv, analysis.json (tests, summary), per_participant.csv (each participant's
        accuracy per method or condition, which `study report` resamples) and the figure, written at once."""
        return write_outputs(out_dir, {
            "markdown": ("analysis.md", self.markdown().encode()),
            "table": ("table.csv", self.table.to_csv(index=False).encode()),
            "json": ("analysis.json", self.to_json().encode()),
            "participants": ("per_participant.csv", self.per_participant.to_csv().encode()),
            "figure": ("figure.png", self.figure_png())})


def _grouped_bars(ax, table, key: str, values: list[str]) -> np.ndarray:
    """One bar per condition in each group of `key` (accuracy with its interval); returns the groups' centres."""
    conditions = list(dict.fromkeys(table["condition"]))
    width = 0.8 / max(1, len(conditions))
    for i, c in enumerate(conditions):
        rows = table[table["condition"] == c].set_index(key).reindex(values)
        ax.bar(np.arange(len(values)) + i * width, rows["accuracy"], width, label=c, yerr=_error_bars(rows), capsize=2)
    centres = np.arange(len(values)) + 0.4 - width / 2
    ax.set_xticks(centres)
    ax.set_xticklabels(values)
    ax.set_ylim(0, 1.05)
    return centres


def _error_bars(rows):
    """Distances from the accuracy to its interval's ends (≥ 0: a Wilson bound can round past p̂ = 0 or 1)."""
    return [(rows["accuracy"] - rows["ci_low"]).clip(lower=0), (rows["ci_high"] - rows["accuracy"]).clip(lower=0)]


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _accuracy(answers) -> dict[str, Any]:
    """The table's cells of a group of answers: their number, accuracy and its 95 % Wilson interval (statsmodels)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(int(answers["correct"].sum()), len(answers), alpha=0.05, method="wilson")
    return {"n": len(answers), "accuracy": answers["correct"].mean(), "ci_low": float(low), "ci_high": float(high)}


def read_scores(path: str | Path) -> dict[str, dict[str, float]]:
    """score → method → value from `two4two evaluate attributions`' attribution_scores.csv
    (with `evaluate faithfulness --scores`, it also holds reveal_cross_entropy and road_probability_gap)."""
    import csv

    path = Path(path)
    if path.is_dir():
        path = path / "attribution_scores.csv"
    if not path.is_file():
        raise TrialAnalysisError(f"{path}: no attribution score table (written by `two4two evaluate attributions`)")
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                out.setdefault(row["score"], {})[row["method"]] = float(row["value"])
            except (KeyError, ValueError):
                raise TrialAnalysisError(f"{path}: expected columns method, score, value with numbers; got {row}") from None
    return out


# ---------------------------------------------------------------- the three analyses


def analyze_trials(frame, bundle: Bundle, automatic: Mapping[str, float] | None = None, keep_too_fast: bool = False) -> TrialAnalysis:
    """The paradigm's analysis of `frame` (read_trial_responses). `automatic`: per method, the
    model's masked-pixel cross-entropy (progressive reveal: ranked against the humans)."""
    if not bundle.is_trial_paradigm:
        raise TrialAnalysisError(f"bundle {bundle.root}: the 2022 study is analysed by `two4two study analyze` without --bundle")
    unknown = sorted(set(frame["trial"]) - {t.id for t in bundle.trials})
    if unknown:
        raise TrialAnalysisError(f"responses: trial {unknown[0]!r} is not in the bundle {bundle.root}; wrong bundle?")
    fast = int(frame["too_fast"].sum())
    data = frame if keep_too_fast else frame[frame["too_fast"] == 0]
    if data.empty:
        raise TrialAnalysisError("responses: no answers left to analyse")
    run = {PROGRESSIVE_REVEAL: _reveal, ACCEPT_REJECT: _accept, GUESS_OUTPUT: _guess}[bundle.paradigm]
    table, tests, summary, per_participant = run(data, bundle, automatic or {})
    return TrialAnalysis(bundle.paradigm, int(data["participant_id"].nunique()), len(data), 0 if keep_too_fast else fast,
                         table, holm(tests), summary, per_participant)


def _reveal(data, bundle: Bundle, automatic: Mapping[str, float]):
    import pandas as pd
    from scipy import stats

    table = pd.DataFrame([{"method": method, "level": int(level), **_accuracy(g),
                           "dont_know": float((g["answer"] == DONT_KNOW).mean()),
                           "median_seconds": float(g["seconds"].median())}
                          for (method, level), g in data.groupby(["method", "level"], sort=True)])
    per = data.groupby(["participant_id", "method", "level"])["correct"].mean().unstack("method")
    tests = []
    methods = sorted(data["method"].unique())
    for level in sorted(data["level"].unique()):
        at = per.xs(level, level="level")
        for a, b in combinations(methods, 2):
            pair = at[[a, b]].dropna()
            diff = pair[a] - pair[b]
            if len(pair) < 2 or (diff == 0).all():
                p, statistic = 1.0, 0.0
            else:
                result = stats.wilcoxon(pair[a], pair[b], zero_method="wilcox", method="approx")  # ties: normal approximation, deterministic
                p, statistic = float(result.pvalue), float(result.statistic)
            tests.append(Test(f"{a} vs {b} at {int(level)} %", statistic, p, str(len(pair)), float(diff.mean())))
    human = table.groupby("method")["accuracy"].mean().sort_values(ascending=False)
    summary: dict[str, Any] = {"human_score": {m: round(float(v), 4) for m, v in human.items()},
                               "human_ranking": list(human.index)}
    shared = [m for m in human.index if m in automatic]
    if len(shared) >= 2:
        tau = stats.kendalltau([human[m] for m in shared], [-automatic[m] for m in shared])  # lower cross-entropy ranks higher
        summary.update({"model_ranking": sorted(shared, key=lambda m: automatic[m]), "kendall_tau": float(tau.statistic),
                        "kendall_p": float(tau.pvalue), "methods_ranked": len(shared)})
    per_participant = data.groupby(["participant_id", "method"])["correct"].mean().unstack("method")
    return table, tests, summary, per_participant


def _accept(data, bundle: Bundle, automatic: Mapping[str, float]):
    import pandas as pd
    from scipy import stats

    shares = bundle.facts.get("bin_shares", {})
    rows = [{"condition": condition, "bin": bin_, **_accuracy(g), "accepted": float((g["answer"] == YES).mean())}
            for (condition, bin_), g in data.groupby(["condition", "bin"], sort=False)]
    table = pd.DataFrame(rows).sort_values(["condition", "bin"]).reset_index(drop=True)
    per = data.groupby(["participant_id", "condition"])["correct"].mean().reset_index()
    conditions = list(dict.fromkeys(c.name for c in bundle.conditions))
    tests = []
    for a, b in combinations([c for c in conditions if c in set(per["condition"])], 2):
        x, y = per.loc[per["condition"] == a, "correct"], per.loc[per["condition"] == b, "correct"]
        result = stats.mannwhitneyu(x, y, alternative="two-sided")
        tests.append(Test(f"{a} vs {b}", float(result.statistic), float(result.pvalue), f"{len(x)}/{len(y)}", float(x.mean() - y.mean())))
    summary: dict[str, Any] = {}
    for c in conditions:
        part = per.loc[per["condition"] == c, "correct"]
        if len(part):
            summary[f"accuracy {c} (mean of participants)"] = round(float(part.mean()), 4)
        if shares:
            cells = table[table["condition"] == c].set_index("bin")["accuracy"]
            weight = sum(shares.get(b, 0) for b in cells.index)
            if weight:
                summary[f"team accuracy {c} (bin-weighted)"] = round(float(sum(cells[b] * shares.get(b, 0) for b in cells.index) / weight), 4)
    ai = bundle.facts.get("ai_alone", {})
    if ai:
        summary["AI alone (confidence threshold, test split)"] = ai.get("test_accuracy")
        summary["AI alone threshold"] = ai.get("threshold")
        summary["ai_alone_per_bin"] = ai.get("per_bin", {})
    per_participant = per.pivot(index="participant_id", columns="condition", values="correct")
    return table, tests, summary, per_participant


def _guess(data, bundle: Bundle, automatic: Mapping[str, float]):
    import pandas as pd
    from scipy import stats

    rows = [{"condition": condition, "group": group, **_accuracy(g)}
            for (condition, group), g in data.groupby(["condition", "group"], sort=False)]
    rows += [{"condition": condition, "group": "all", **_accuracy(g)}
             for condition, g in data.groupby("condition", sort=False)]
    table = pd.DataFrame(rows).sort_values(["condition", "group"]).reset_index(drop=True)
    conditions = [c.name for c in bundle.conditions]
    reference = conditions[0]  # the condition without a map comes first in exported bundles
    tests = []
    ref = data[data["condition"] == reference]["correct"]
    for c in conditions[1:]:
        other = data[data["condition"] == c]["correct"]
        if len(other) == 0 or len(ref) == 0:
            continue
        table2 = [[int(other.sum()), int(len(other) - other.sum())], [int(ref.sum()), int(len(ref) - ref.sum())]]
        result = stats.fisher_exact(table2)
        tests.append(Test(f"{c} vs {reference}", float(result.statistic), float(result.pvalue), f"{len(other)}/{len(ref)}",
                          float(other.mean() - ref.mean())))
    summary = {f"accuracy {c}": round(float(data[data["condition"] == c]["correct"].mean()), 4)
               for c in conditions if (data["condition"] == c).any()}
    per_participant = data.groupby(["participant_id", "condition"])["correct"].mean().reset_index().pivot(
        index="participant_id", columns="condition", values="correct")
    return table, tests, summary, per_participant


# ---------------------------------------------------------------- simulated participants


def _base_probability(bundle: Bundle, trial, step) -> tuple[float, float]:
    """(P(correct), P("I don't know")) of a simulated participant without any planted effect."""
    if bundle.paradigm == PROGRESSIVE_REVEAL:
        level = float(step.info["level"])
        known = 1 / (1 + math.exp(-2.5 * (math.log(level) - math.log(15))))  # half the answers right from ≈ 15 %
        return 0.5 + 0.45 * known - 0.2 * (1 - known), 0.4 * (1 - known)
    if bundle.paradigm == ACCEPT_REJECT:
        return {"easy": 0.85, "medium": 0.7, "hard": 0.5}.get(str(trial.info.get("bin", "")).split("_")[0], 0.7), 0.0
    return (0.6 if trial.group == "misclassified" else 0.8), 0.0


def simulate_trial_responses(bundle: Bundle, per_condition: int, effects: Mapping[str, float] | None = None, seed: int = 0,
                             too_fast_share: float = 0.0):
    """Participants drawn as the runner draws them (balanced, least-shown first), answering with the
    base probabilities plus `effects` (condition → Δ, or METHOD@LEVEL → Δ), as a responses frame."""
    import pandas as pd

    if not bundle.is_trial_paradigm:
        raise TrialAnalysisError("simulate: the bundle is the 2022 study; use `two4two study simulate` without --bundle")
    effects = dict(effects or {})
    known = {c.name for c in bundle.conditions} | {f"{t.info.get('method')}@{s.info.get('level')}" for t in bundle.trials for s in t.steps}
    unknown = sorted(set(effects) - known)
    if unknown:
        raise TrialAnalysisError(f"effect {unknown[0]!r}: no such condition or METHOD@LEVEL in the bundle")
    rng = np.random.default_rng(seed)
    draw_rng = random.Random(seed)
    shown: dict[str, int] = {}
    rows = []
    for condition in bundle.condition_names:
        for k in range(per_condition):
            pid = f"S{condition}{k:04d}"
            plan = draw_plan(bundle.trials, bundle.order, condition, shown, draw_rng)
            for t in plan:
                shown[t] = shown.get(t, 0) + 1
            for position, tid in enumerate(plan):
                trial = bundle.trial(tid)
                for index, step in enumerate(trial.steps):
                    p_correct, p_unsure = _base_probability(bundle, trial, step)
                    p_correct += effects.get(condition, 0.0) + effects.get(f"{trial.info.get('method')}@{step.info.get('level')}", 0.0)
                    p_correct = min(max(p_correct, 0.0), 1.0)
                    p_unsure = min(p_unsure, 1.0 - p_correct)
                    u = rng.random()
                    wrong = [c for c in step.choices if c not in (step.correct, DONT_KNOW)]
                    answer = step.correct if u < p_correct else (DONT_KNOW if u < p_correct + p_unsure else wrong[0])
                    fast = rng.random() < too_fast_share
                    seconds = float(rng.uniform(0.05, 0.25) if fast else 0.4 + rng.lognormal(0.3, 0.5))
                    rows.append(response_row(pid, condition, position, trial, index, answer, seconds,
                                             bundle.too_fast_seconds))
    return pd.DataFrame(rows)

