"""How much each attribute tells about the class: the data-bias side of the story.

For every attribute: accuracy of the best single-threshold rule and mutual information
with the class, over all samples and inside the ambiguous legs band, and the mutual
information conditional on the legs' position (what an attribute adds beyond the legs).
A joint-distribution plot (legs' position against every attribute, by class) shows the
same at a glance, like Figure 3 of Sixt et al. (2022) for every attribute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from two4two.parameters import BOOLEAN_ATTRIBUTES, CONTINUOUS_RANGES, SceneParameters
from two4two.plotting import pyplot, save_figure
from two4two.sampling import SceneBatch, attribute_columns

LEGS = "arm_position"
REPORTED = tuple(a for a in (*CONTINUOUS_RANGES, *BOOLEAN_ATTRIBUTES))


def _codes(x: np.ndarray, bins: int) -> np.ndarray:
    """Integer bin codes: categories for discrete values, quantile bins for continuous ones."""
    if x.dtype.kind in "bUO" or len(np.unique(x[: 10 * bins])) <= bins:
        return np.unique(x, return_inverse=True)[1]
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, x, side="right")


def _mi_from_codes(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0:
        return float("nan")
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def default_bins(n: int) -> int:
    """Fewer bins for fewer samples: the plug-in estimate's upward bias grows as bins/n."""
    return int(np.clip(np.sqrt(n) / 2, 2, 20))


def mutual_information(x: np.ndarray, y: np.ndarray, bins: int | None = None) -> float:
    """Plug-in mutual information in nats between an attribute and a discrete label."""
    x, y = np.asarray(x), np.asarray(y)
    bins = default_bins(len(x)) if bins is None else bins
    return _mi_from_codes(_codes(x, bins), np.unique(y, return_inverse=True)[1])


def conditional_mutual_information(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, bins: int | None = None, z_bins: int = 10
) -> float:
    """I(x; y | z) in nats, with z binned into quantiles: what x adds beyond z."""
    x, y, z = np.asarray(x), np.asarray(y), np.asarray(z)
    z_bins = min(z_bins, default_bins(len(z)))
    zc = _codes(z, z_bins)
    total = 0.0
    for code in np.unique(zc):
        sel = zc == code
        total += sel.mean() * mutual_information(x[sel], y[sel], bins)
    return total


def best_threshold_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the best rule 'class = [x > t]' or its reverse, over all thresholds t."""
    x, y = np.asarray(x, dtype=float), np.asarray(y).astype(bool)
    n = len(x)
    if n == 0:
        return float("nan")
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    # Predict 1 above the cut: correct = zeros at or below the cut + ones above it.
    zeros_below = np.concatenate([[0], np.cumsum(~ys)])
    ones_above = ys.sum() - np.concatenate([[0], np.cumsum(ys)])
    correct = zeros_below + ones_above
    # Only cut between distinct values.
    valid = np.concatenate([[True], xs[1:] != xs[:-1], [True]])
    best = correct[valid].max() / n
    worst = correct[valid].min() / n
    return float(max(best, 1 - worst))


@dataclass
class AttributeBias:
    attribute: str
    threshold_accuracy: float
    threshold_accuracy_band: float
    mutual_information: float
    mutual_information_band: float
    mutual_information_given_legs: float


def describe(
    params: SceneBatch | Sequence[SceneParameters],
    band: tuple[float, float] = (0.48, 0.52),
) -> list[AttributeBias]:
    """One row per attribute; the class is the true one (obj_name), not a noisy label."""
    cols = params.columns if isinstance(params, SceneBatch) else attribute_columns(params)
    y = cols["obj_name"] == "stretchy"
    legs = np.asarray(cols[LEGS], dtype=float)
    in_band = (legs >= band[0]) & (legs <= band[1])
    rows = []
    for attr in REPORTED:
        x = np.asarray(cols[attr])
        rows.append(
            AttributeBias(
                attribute=attr,
                threshold_accuracy=best_threshold_accuracy(x, y),
                threshold_accuracy_band=best_threshold_accuracy(x[in_band], y[in_band]),
                mutual_information=mutual_information(x, y),
                mutual_information_band=mutual_information(x[in_band], y[in_band]),
                mutual_information_given_legs=(
                    float("nan") if attr == LEGS else conditional_mutual_information(x, y, legs)
                ),
            )
        )
    return rows


def format_table(
    rows: Sequence[AttributeBias], n: int, n_band: int, band: tuple[float, float] = (0.48, 0.52)
) -> str:
    """A plain-text table for the terminal."""
    head = (
        f"{'attribute':<20} {'acc':>6} {'acc band':>9} {'MI':>8} {'MI band':>8} {'MI | legs':>10}"
    )
    lines = [
        f"Bias report over {n} samples (acc: best threshold rule; MI in nats; "
        f"band: the {n_band} samples with legs' position in [{band[0]}, {band[1]}])",
        head,
        "-" * len(head),
    ]

    def fmt(v: float, width: int, digits: int) -> str:
        return f"{'—':>{width}}" if math.isnan(v) else f"{v:>{width}.{digits}f}"

    for r in rows:
        lines.append(
            f"{r.attribute:<20} {fmt(r.threshold_accuracy, 6, 3)} {fmt(r.threshold_accuracy_band, 9, 3)} "
            f"{fmt(r.mutual_information, 8, 4)} {fmt(r.mutual_information_band, 8, 4)} "
            f"{fmt(r.mutual_information_given_legs, 10, 4)}"
        )
    lines.append("An attribute with MI | legs well above 0 gives class information beyond the legs (a predictive bias).")
    return "\n".join(lines)


def plot_joint_distributions(
    params: SceneBatch | Sequence[SceneParameters],
    path: str | Path,
    max_points: int = 4000,
    seed: int = 0,
) -> Path:
    """Scatter legs' position against every other attribute, coloured by class (PNG)."""
    plt = pyplot()
    cols = params.columns if isinstance(params, SceneBatch) else attribute_columns(params)
    n = len(cols[LEGS])
    pick = np.random.default_rng(seed).permutation(n)[:max_points]
    legs = np.asarray(cols[LEGS], dtype=float)[pick]
    stretchy = (cols["obj_name"] == "stretchy")[pick]
    others = [a for a in REPORTED if a != LEGS]
    ncols = 4
    nrows = math.ceil(len(others) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    jitter = np.random.default_rng(seed + 1).uniform(-0.15, 0.15, len(pick))
    for ax, attr in zip(axes.flat, others):
        y = np.asarray(cols[attr])[pick].astype(float)
        if attr in BOOLEAN_ATTRIBUTES:
            y = y + jitter
        for mask, colour, label in ((~stretchy, "#e6a700", "Peeky"), (stretchy, "#1f5fbf", "Stretchy")):
            ax.scatter(legs[mask], y[mask], s=2, alpha=0.35, c=colour, label=label, linewidths=0)
        if attr in BOOLEAN_ATTRIBUTES:
            ax.set_yticks([0, 1], ["false", "true"])
        ax.set_title(attr, fontsize=9)
        ax.set_xlabel("legs' position", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(others):]:
        ax.axis("off")
    axes.flat[0].legend(markerscale=4, fontsize=7, loc="upper right")
    return save_figure(fig, path, f"Joint distributions with the legs' position ({len(pick)} of {n} samples)")


def count_in_band(params: SceneBatch | Sequence[SceneParameters], band: tuple[float, float] = (0.48, 0.52)) -> int:
    cols = params.columns if isinstance(params, SceneBatch) else attribute_columns(params)
    legs = np.asarray(cols[LEGS], dtype=float)
    return int(((legs >= band[0]) & (legs <= band[1])).sum())
