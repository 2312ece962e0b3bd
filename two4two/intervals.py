"""Estimates with 95 % intervals, the one place the project bootstraps: a value and its percentile
interval (scipy's bootstrap where the statistic is vectorised), means over images, Spearman ρ."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np


@dataclass
class Interval:
    value: float
    low: float
    high: float

    def fmt(self, digits: int = 3) -> str:
        if math.isnan(self.value):
            return "—"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of text cells: the head, its rule, then one line per row (the reports' tables)."""
    rule = "|" + "---|" * len(head)
    return "\n".join([f"| {' | '.join(head)} |", rule, *(f"| {' | '.join(cells)} |" for cells in rows)])


def percentile_interval(draws) -> tuple[float, float]:
    """The central 95 % of bootstrap draws (the finite ones); NaN, NaN when there are none."""
    draws = np.asarray(draws, np.float64)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_interval(data: tuple[np.ndarray, ...], statistic: Callable, n_resamples: int, seed: int) -> Interval:
    """`statistic(*data, axis=-1)` with scipy's paired percentile bootstrap; no interval under 3 values."""
    from scipy import stats

    value = float(statistic(*data, axis=-1))
    if len(data[0]) < 3 or not np.isfinite(value):
        return Interval(value, float("nan"), float("nan"))
    res = stats.bootstrap(
        data, statistic, paired=True, vectorized=True, n_resamples=n_resamples, method="percentile",
        confidence_level=0.95, random_state=np.random.default_rng(seed),
    )
    return Interval(value, float(res.confidence_interval.low), float(res.confidence_interval.high))


def mean_interval(values: np.ndarray, n_resamples: int, seed: int) -> Interval:
    """Mean (NaN excluded) with a percentile-bootstrap 95 % interval."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return Interval(float("nan"), float("nan"), float("nan"))
    return bootstrap_interval((v,), np.mean, n_resamples, seed)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman ρ over the pairs where both are finite; NaN under 3 pairs or for a constant side."""
    from scipy import stats

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


def spearman_interval(x: np.ndarray, y: np.ndarray, n_resamples: int, seed: int) -> Interval:
    """Spearman ρ over pairs with a percentile-bootstrap interval (resampling pairs; a draw with a
    constant side has no ρ and is skipped, which scipy's bootstrap cannot do)."""
    from scipy import stats

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    value = spearman(x, y)
    if math.isnan(value):
        return Interval(value, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    rank_x, rank_y = stats.rankdata(x), stats.rankdata(y)
    draws = []
    for _ in range(n_resamples):
        i = rng.integers(0, len(x), len(x))
        a, b = rank_x[i], rank_y[i]
        if np.ptp(a) and np.ptp(b):
            draws.append(stats.pearsonr(stats.rankdata(a), stats.rankdata(b)).statistic)
    return Interval(value, *percentile_interval(draws))
