"""Human and automatic side by side: do the automatic scores of attribution methods predict what
helped people? (the question every seed paper asked).

Per method, the automatic scores of `two4two evaluate attributions` (ground truth: localisation,
part deletion, attribute agreement; ROAD and the masked-pixel cross-entropy once `evaluate
faithfulness --scores` added them) beside each paradigm's human measure from `two4two study
analyze --bundle` (per_participant.csv):

- progressive_reveal: a participant's accuracy over all levels with that method's reveals;
- accept_reject: the team accuracy of the participants who saw that method's maps;
- guess_output: the guessing accuracy of the participants who saw that method's maps.

Then Spearman ρ across methods between every automatic score and every human measure, with a
95 % interval from resampling participants (within each condition of a between-subject design)
and recomputing the human measure; the automatic scores are held fixed (their own intervals
are in the attribution table). With few methods ρ takes few values: the interval says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from two4two.errors import Two4TwoError
from two4two.intervals import markdown_table, percentile_interval
from two4two.study.responses import write_outputs

DEFAULT_SCORES = ("pointing_game_animal", "wsl", "single_deletion", "attribute_agreement", "road_probability_gap",
                  "reveal_cross_entropy")
LOWER_IS_BETTER = {"reveal_cross_entropy", "sanity_spearman_abs"}
HUMAN_MEASURES = {"progressive_reveal": "reveal accuracy", "accept_reject": "team accuracy", "guess_output": "guessing accuracy"}


class ReportError(Two4TwoError, ValueError):
    """Inputs the report cannot put side by side."""


@dataclass
class HumanMeasure:
    """One paradigm's per-participant accuracies per method (NaN where a participant did not see it)."""

    name: str
    table: "object"  # pandas DataFrame: participants × methods

    def means(self, methods: Sequence[str]) -> np.ndarray:
        return np.array([float(self.table[m].mean()) for m in methods])

    def resampled_means(self, methods: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        """Means after resampling, per method, the participants who have a value for it."""
        out = []
        for m in methods:
            values = self.table[m].dropna().to_numpy()
            out.append(values[rng.integers(0, len(values), len(values))].mean())
        return np.array(out)


def read_human(analysis_dir: str | Path) -> HumanMeasure:
    """The per-participant accuracies written by `two4two study analyze --bundle` (per_participant.csv)."""
    import pandas as pd

    root = Path(analysis_dir)
    meta, per = root / "analysis.json", root / "per_participant.csv"
    if not meta.is_file() or not per.is_file():
        raise ReportError(f"{root}: no analysis.json and per_participant.csv (written by `two4two study analyze --bundle`)")
    paradigm = json.loads(meta.read_text())["paradigm"]
    if paradigm not in HUMAN_MEASURES:
        raise ReportError(f"{root}: paradigm {paradigm!r} has no per-method human measure")
    return HumanMeasure(f"{paradigm}: {HUMAN_MEASURES[paradigm]}", pd.read_csv(per, index_col=0))


@dataclass
class SideBySide:
    methods: list[str]
    automatic: dict[str, dict[str, float]]  # score → method → value
    human: dict[str, dict[str, float]]  # measure → method → value
    correlations: list[dict]  # score, measure, n, rho, low, high

    def markdown(self) -> str:
        from two4two.explain.attribution import LABELS

        scores, measures = list(self.automatic), list(self.human)
        head = ["method", *[s + (" ↓" if s in LOWER_IS_BETTER else "") for s in scores], *measures]
        rows = ([LABELS.get(m, m), *(_num(self.automatic[s].get(m)) for s in scores),
                 *(_num(self.human[h].get(m)) for h in measures)] for m in self.methods)
        out = ["## Per method: automatic scores and human measures", "", markdown_table(head, rows), "",
               "## Spearman ρ across methods (95 % interval: participants resampled)", "",
               "| automatic score | human measure | methods | ρ | 95 % interval |", "|---|---|---|---|---|"]
        for c in self.correlations:
            interval = "—" if c["low"] is None else f"[{c['low']:+.2f}, {c['high']:+.2f}]"
            out.append(f"| {c['score']} | {c['measure']} | {c['n']} | {_num(c['rho'], signed=True)} | {interval} |")
        return "\n".join(out) + "\n"

    def to_json(self) -> str:
        return json.dumps({"methods": self.methods, "automatic": self.automatic, "human": self.human,
                           "correlations": self.correlations}, indent=2)

    def figure_png(self) -> bytes:
        from two4two.plotting import figure_png, pyplot

        plt = pyplot()
        scores, measures = list(self.automatic), list(self.human)
        grid = np.full((len(scores), len(measures)), np.nan)
        for c in self.correlations:
            if c["rho"] is not None:
                grid[scores.index(c["score"]), measures.index(c["measure"])] = c["rho"]
        fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(measures), 1.2 + 0.45 * len(scores)))
        image = ax.imshow(grid, cmap="bwr", vmin=-1, vmax=1, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "—" if np.isnan(v) else f"{v:+.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(measures)))
        ax.set_xticklabels([m.replace(": ", ":\n") for m in measures], fontsize=8)
        ax.set_yticks(range(len(scores)))
        ax.set_yticklabels(scores, fontsize=8)
        fig.colorbar(image, ax=ax, label="Spearman ρ across methods")
        ax.set_title("Do automatic scores predict what helped people?", fontsize=9)
        return figure_png(fig)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        return write_outputs(out_dir, {"markdown": ("report.md", self.markdown().encode()),
                                       "json": ("report.json", self.to_json().encode()),
                                       "figure": ("report.png", self.figure_png())})


def _num(x, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "—"
    return f"{x:+.2f}" if signed else f"{x:.3f}"


def side_by_side(scores: Mapping[str, Mapping[str, float]], human: Sequence[HumanMeasure], score_names: Sequence[str] = DEFAULT_SCORES,
                 resamples: int = 1000, seed: int = 0) -> SideBySide:
    """The per-method table and every score × measure rank correlation with its interval."""
    from scipy import stats

    missing = [s for s in score_names if s not in scores]
    if missing:
        raise ReportError(f"scores: {missing[0]!r} is not in the attribution score table; it has {', '.join(sorted(scores))}")
    methods = sorted({m for h in human for m in h.table.columns if any(m in scores[s] for s in score_names)})
    if not methods:
        raise ReportError("no method has both automatic scores and a human measure (are the conditions attribution methods?)")
    rng = np.random.default_rng(seed)
    correlations = []
    for h in human:
        shared = [m for m in methods if m in h.table.columns]
        means = h.means(shared)
        boot = np.array([h.resampled_means(shared, rng) for _ in range(resamples)]) if len(shared) >= 3 else None
        for s in score_names:
            have = [i for i, m in enumerate(shared) if m in scores[s]]
            auto = np.array([scores[s][shared[i]] for i in have])
            rho = low = high = None
            if len(have) >= 3:
                rho = float(stats.spearmanr(auto, means[have]).statistic)
                low, high = percentile_interval([stats.spearmanr(auto, b[have]).statistic for b in boot])
                low, high = (None, None) if math.isnan(low) else (low, high)
            correlations.append({"score": s, "measure": h.name, "n": len(have), "rho": rho, "low": low, "high": high})
    automatic = {s: {m: float(scores[s][m]) for m in methods if m in scores[s]} for s in score_names}
    humans = {h.name: {m: float(h.table[m].mean()) for m in methods if m in h.table.columns} for h in human}
    return SideBySide(methods, automatic, humans, correlations)
