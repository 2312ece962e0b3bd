"""Faithfulness curves: the model's answers as the pixels an attribution map ranks are removed.

ROAD (Rong et al. 2022, "A consistent and efficient evaluation strategy for attribution
methods", ICML): remove the p % most relevant pixels (MoRF) or the p % least relevant (LeRF),
fill them by *noisy linear imputation* and ask the model again. A faithful map makes MoRF fall
fast and LeRF stay flat; the LeRF − MoRF area sums that up. Imputation: every removed pixel is
the weighted mean of its 8 neighbours (1/6 for the 4 direct ones, 1/12 for the diagonals;
neighbours outside the image are dropped and the rest keep their weights), which for a
connected patch of removed pixels is a sparse linear system whose known side is the kept
pixels around it; then Gaussian noise (σ = 0.01 on [0, 1]) on the imputed pixels, so the
imputation's smoothness does not tell the model where the pixels were. The systems of a whole
batch of images go into one block-diagonal sparse matrix, factorised once and solved for the
three channels at once. `fixed` (one grey) and `mean` (the image's mean colour) imputation are
there for comparison. Ranks come from the signed map (evidence for the explained class first),
scaled by its largest magnitude, with a tiny random tie-breaker.

Masked-pixel curves (Biessmann & Refiano 2021, "Quality metrics for transparent machine
learning with and without humans in the loop are not correlated", ICML workshop): keep only the
top p % of pixels (p = 5, 6, 8, 11, 15, 19, 26, 34, 45, 60), the rest grey or ROAD-imputed, and
report the model's accuracy and cross-entropy on the true class per level.

Both measure against the TRUE label: accuracy and the mean probability of the true class
(ROAD's reference code reports class 0's probability, which is not the same thing).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from two4two.errors import Two4TwoError

DEFAULT_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
REVEAL_LEVELS = (5, 6, 8, 11, 15, 19, 26, 34, 45, 60)  # Biessmann & Refiano 2021, % of pixels shown
IMPUTATIONS = ("linear", "fixed", "mean")
ORDERS = ("morf", "lerf")
NOISE_SIGMA = 0.01
FIXED_GREY = 0.5
TIE_BREAK = 1e-6  # of the map's largest magnitude
CHUNK_UNKNOWNS = 4096  # removed pixels per sparse system (benchmarks/faithfulness.py)
NEIGHBOURS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
              (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))


class FaithfulnessError(Two4TwoError, ValueError):
    """Bad percentages, imputation or inputs."""


def check_percentages(percentages: Sequence[float], name: str = "percentages") -> tuple[float, ...]:
    values = tuple(float(p) for p in percentages)
    bad = [p for p in values if not (0 < p < 100) or math.isnan(p)]
    if not values or bad:
        raise FaithfulnessError(f"{name}: expected values strictly between 0 and 100, got {bad[0] if bad else 'none'}")
    return tuple(sorted(set(values)))


# ---- imputation ---------------------------------------------------------------------


def imputation_system(removed: np.ndarray):
    """The linear system of noisy linear imputation for boolean masks (N × H × W, True = removed).

    Returns (A, K, unknown_ids, floating): A (k × k, CSC) and K (k × N·H·W, CSR) such that the
    imputed values X (k × channels) solve A X = K · pixels; `unknown_ids` are the flat pixel ids
    of the k removed pixels, `floating` marks those of an image with no kept pixel at all, whose
    rows are the identity and are filled with the image's mean instead. (A connected patch of
    removed pixels that touches no kept pixel is closed under the 8-neighbourhood, so it is the
    whole image; every other patch has kept neighbours and a unique solution.) A is symmetric and,
    row by row, diagonally dominant — strictly where a kept pixel is near — so it is positive definite.
    """
    from scipy import sparse

    removed = np.asarray(removed, bool)
    n, h, w = removed.shape
    ids = np.flatnonzero(removed.ravel())
    k = len(ids)
    unknown = np.full(removed.size, -1, np.int64)
    unknown[ids] = np.arange(k)
    img, r, c = np.unravel_index(ids, removed.shape)
    diag = np.zeros(k)
    a_rows, a_cols, a_vals, k_rows, k_cols, k_vals = [], [], [], [], [], []
    for dr, dc, weight in NEIGHBOURS:
        rr, cc = r + dr, c + dc
        inside = np.flatnonzero((rr >= 0) & (rr < h) & (cc >= 0) & (cc < w))
        neighbour = np.ravel_multi_index((img[inside], rr[inside], cc[inside]), removed.shape)
        diag[inside] += weight
        u = unknown[neighbour]
        free = u >= 0
        a_rows.append(inside[free]); a_cols.append(u[free]); a_vals.append(np.full(free.sum(), -weight))
        k_rows.append(inside[~free]); k_cols.append(neighbour[~free]); k_vals.append(np.full((~free).sum(), weight))
    off = sparse.csr_matrix((np.concatenate(a_vals), (np.concatenate(a_rows), np.concatenate(a_cols))), shape=(k, k))
    known = sparse.csr_matrix((np.concatenate(k_vals), (np.concatenate(k_rows), np.concatenate(k_cols))), shape=(k, removed.size))
    # An image removed entirely has no unique solution (only differences would be fixed).
    floating = removed.reshape(n, -1).all(axis=1)[img]
    if floating.any():
        keep = sparse.diags((~floating).astype(np.float64))
        off, known = keep @ off, keep @ known
        diag[floating] = 1.0
    return (sparse.diags(diag) + off).tocsc(), known.tocsr(), ids, floating


def impute(images: np.ndarray, removed: np.ndarray, method: str = "linear", noise: float = NOISE_SIGMA,
           rng: np.random.Generator | int | None = 0, workers: int | None = None) -> np.ndarray:
    """Images (N × H × W × C, uint8 or float in [0, 1]) with the `removed` pixels (N × H × W) filled.

    Returns float64 in [0, 1]; kept pixels are exactly the input's. `method`: linear (ROAD's
    noisy linear imputation), fixed (grey 0.5) or mean (the image's mean colour over kept pixels);
    `noise` (σ) is added to the filled pixels for every method. The sparse systems are solved on
    `workers` threads (default: one per core; SuperLU releases the GIL while it factorises).
    """
    if method not in IMPUTATIONS:
        raise FaithfulnessError(f"imputation: expected one of {', '.join(IMPUTATIONS)}, got {method!r}")
    x = np.asarray(images)
    x = x.astype(np.float64) / 255 if x.dtype == np.uint8 else np.array(x, dtype=np.float64)
    removed = np.asarray(removed, bool)
    if removed.shape != x.shape[:3]:
        raise FaithfulnessError(f"removed: expected a mask of shape {x.shape[:3]}, got {removed.shape}")
    out = x.copy()
    flat = out.reshape(-1, x.shape[-1])
    kept = ~removed
    counts = kept.reshape(len(x), -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts[:, None] > 0, (x * kept[..., None]).sum(axis=(1, 2)) / counts[:, None], FIXED_GREY)
    ids = np.flatnonzero(removed.ravel())
    if not len(ids):
        return out
    if method == "linear":
        chunks = _chunks(removed)
        workers = min(len(chunks), workers or os.cpu_count() or 1)
        solve = lambda se: _solve_linear(x[se[0]:se[1]], removed[se[0]:se[1]], means[se[0]:se[1]])  # noqa: E731
        with ThreadPoolExecutor(workers) as pool:
            values = np.concatenate(list(pool.map(solve, chunks)))
    elif method == "fixed":
        values = np.full((len(ids), x.shape[-1]), FIXED_GREY)
    else:
        values = means[ids // (removed.shape[1] * removed.shape[2])]
    if noise:
        values = values + np.random.default_rng(rng).normal(0.0, noise, values.shape)
    flat[ids] = np.clip(values, 0.0, 1.0)
    return out


def _chunks(removed: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive images whose removed pixels together stay under CHUNK_UNKNOWNS (at least one image).

    Small systems share one factorisation (the per-call overhead dominates them); large ones are
    factorised alone, since SuperLU's fill-in on one block-diagonal matrix of many large systems
    grows faster than the systems do.
    """
    counts = removed.reshape(len(removed), -1).sum(axis=1)
    out, start, total = [], 0, 0
    for i, c in enumerate(counts):
        if i > start and total + c > CHUNK_UNKNOWNS:
            out.append((start, i))
            start, total = i, 0
        total += c
    return out + [(start, len(counts))]


def _solve_linear(x: np.ndarray, removed: np.ndarray, means: np.ndarray) -> np.ndarray:
    """The imputed values (removed pixels in flat order × channels) of one chunk: one factorisation, every channel."""
    from scipy.sparse.linalg import splu

    if not removed.any():
        return np.zeros((0, x.shape[-1]))
    a, known, ids, floating = imputation_system(removed)
    rhs = known @ x.reshape(-1, x.shape[-1])
    rhs[floating] = means[ids[floating] // (removed.shape[1] * removed.shape[2])]
    # Symmetric positive definite: a symmetric fill-reducing order and no pivoting (about 1.5× faster
    # than SuperLU's default column order here; benchmarks/faithfulness.py).
    lu = splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return lu.solve(np.ascontiguousarray(rhs))


# ---- ranking ------------------------------------------------------------------------


def pixel_order(maps: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per image, flat pixel ids from most to least relevant (signed map, ties broken at random)."""
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    scale = np.abs(flat).max(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    jitter = np.random.default_rng(seed).random(flat.shape) * TIE_BREAK
    return np.argsort(-(flat / scale + jitter), axis=1, kind="stable")


def removal_masks(order: np.ndarray, shape: tuple[int, int], percent: float, most_relevant: bool) -> np.ndarray:
    """Boolean N × H × W: the `percent` % most (or least) relevant pixels of each image."""
    n, pixels = order.shape
    k = int(round(pixels * percent / 100))
    chosen = order[:, :k] if most_relevant else order[:, pixels - k:]
    out = np.zeros((n, pixels), bool)
    np.put_along_axis(out, chosen, True, axis=1)
    return out.reshape(n, *shape)


# ---- model answers ------------------------------------------------------------------


def true_class_probability(logits: np.ndarray, true_labels: np.ndarray) -> np.ndarray:
    """P(true class) from our one logit per image (z for stretchy)."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    return np.where(np.asarray(true_labels) == 1, p, 1.0 - p)


# ---- the evaluation -----------------------------------------------------------------


@dataclass
class Curves:
    """One method's curves: per order, per percentage, per image, the true-class probability (correct above 0.5)."""

    percentages: tuple[float, ...]
    probability: dict[str, np.ndarray]  # order → (P, N)

    def mean_probability(self, order: str) -> np.ndarray:
        return self.probability[order].mean(axis=1)

    def accuracy(self, order: str) -> np.ndarray:
        return (self.probability[order] > 0.5).mean(axis=1)

    def area(self, values: np.ndarray) -> float:
        """Mean height of a curve over the percentage axis (trapezoid rule on [first, last] %)."""
        p = np.asarray(self.percentages)
        if len(p) == 1:
            return float(values[0])
        return float(np.trapz(values, p) / (p[-1] - p[0]))

    def per_image_gap(self) -> np.ndarray:
        """Per image, the LeRF − MoRF area of its true-class probability."""
        return np.array([self.area(lerf) - self.area(morf) for lerf, morf in zip(self.probability["lerf"].T, self.probability["morf"].T)])

    def summary(self) -> dict[str, float]:
        """LeRF − MoRF areas of accuracy and true-class probability: larger is more faithful."""
        morf, lerf = self.area(self.mean_probability("morf")), self.area(self.mean_probability("lerf"))
        return {"road_accuracy_gap": self.area(self.accuracy("lerf")) - self.area(self.accuracy("morf")),
                "road_probability_gap": lerf - morf, "morf_probability_area": morf, "lerf_probability_area": lerf}


@dataclass
class RevealCurves:
    """One method's masked-pixel curve: per level (% shown), accuracy and mean cross-entropy on the true class."""

    levels: tuple[float, ...]
    accuracy: np.ndarray  # (L,)
    cross_entropy: np.ndarray  # (L,)
    per_image_cross_entropy: np.ndarray | None = None  # (N,): mean over the levels


@dataclass
class FaithfulnessResult:
    """ROAD and masked-pixel curves of every method, for one model on one split."""

    road: dict[str, Curves]
    reveal: dict[str, RevealCurves] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def records(self) -> list[dict]:
        road = [{"method": m, "curve": order, "percent": p, "accuracy": float(acc),
                 "true_class_probability": float(prob), "cross_entropy": ""}
                for m, c in self.road.items() for order in ORDERS
                for p, acc, prob in zip(c.percentages, c.accuracy(order), c.mean_probability(order))]
        return road + [{"method": m, "curve": "shown", "percent": p, "accuracy": float(acc),
                        "true_class_probability": "", "cross_entropy": float(ce)}
                       for m, r in self.reveal.items() for p, acc, ce in zip(r.levels, r.accuracy, r.cross_entropy)]

    def summary_rows(self) -> list[dict]:
        rows = []
        for m, c in self.road.items():
            row = {"method": m, **c.summary()}
            if m in self.reveal:
                row["reveal_cross_entropy_mean"] = float(np.mean(self.reveal[m].cross_entropy))
                row["reveal_accuracy_mean"] = float(np.mean(self.reveal[m].accuracy))
            rows.append(row)
        return rows

    def score_intervals(self, n_resamples: int = 1000, seed: int = 0) -> dict:
        """method → {road_probability_gap, reveal_cross_entropy: Interval}: the scores this adds to the
        attribution score table (two4two.explain.attribution_scores.SCORES), bootstrapped over images."""
        from two4two.intervals import mean_interval

        out = {}
        for i, (m, c) in enumerate(self.road.items()):
            out[m] = {"road_probability_gap": mean_interval(c.per_image_gap(), n_resamples, seed + i)}
            r = self.reveal.get(m)
            if r is not None and r.per_image_cross_entropy is not None:
                out[m]["reveal_cross_entropy"] = mean_interval(r.per_image_cross_entropy, n_resamples, seed + 500 + i)
        return out

    def format_table(self) -> str:
        from two4two.explain.attribution import LABELS

        rows = sorted(self.summary_rows(), key=lambda r: -r["road_probability_gap"])
        reveal = bool(self.reveal)
        head = "| method | LeRF − MoRF, probability | LeRF − MoRF, accuracy | MoRF area | LeRF area |"
        head += " shown top p %: mean accuracy | mean cross-entropy ↓ |" if reveal else ""
        lines = [head, "|---" * (5 + 2 * reveal) + "|"]
        for r in rows:
            line = (f"| {LABELS.get(r['method'], r['method'])} | {r['road_probability_gap']:+.3f} | {r['road_accuracy_gap']:+.3f} "
                    f"| {r['morf_probability_area']:.3f} | {r['lerf_probability_area']:.3f} |")
            if reveal:
                line += f" {r.get('reveal_accuracy_mean', float('nan')):.3f} | {r.get('reveal_cross_entropy_mean', float('nan')):.3f} |"
            lines.append(line)
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        import json

        from two4two.io import atomic_write_csv, atomic_write_text

        out = Path(out_dir)
        text = (f"## Faithfulness ({self.meta.get('imputation', 'linear')} imputation; MoRF/LeRF on the true class; "
                "sorted by the probability gap)\n\n" + self.format_table() + "\n")
        return {"csv": atomic_write_csv(out / "faithfulness_curves.csv", self.records()),
                "summary_csv": atomic_write_csv(out / "faithfulness.csv", self.summary_rows()),
                "md": atomic_write_text(out / "faithfulness.md", text),
                "json": atomic_write_text(out / "faithfulness.json", json.dumps(self.meta, indent=2) + "\n"),
                "png": self.plot(out / "faithfulness.png")}

    def plot(self, path: Path) -> Path:
        """MoRF and LeRF probability curves per method, and the masked-pixel accuracy per level."""
        from two4two.explain.attribution import LABELS
        from two4two.io import atomic_write_bytes
        from two4two.plotting import figure_png, pyplot

        plt = pyplot()
        panels = 3 if self.reveal else 2
        fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
        colours = plt.get_cmap("tab20")
        for i, (m, c) in enumerate(self.road.items()):
            for ax, order in zip(axes[0], ORDERS):
                ax.plot(c.percentages, c.mean_probability(order), marker="o", ms=3, color=colours(i % 20), label=LABELS.get(m, m))
        for ax, order in zip(axes[0], ORDERS):
            ax.set_title(f"{order.upper()}: {'most' if order == 'morf' else 'least'} relevant pixels removed", fontsize=9)
            ax.set_xlabel("% of pixels removed")
            ax.set_ylabel("mean probability of the true class")
            ax.set_ylim(0, 1)
        if self.reveal:
            ax = axes[0, 2]
            for i, (m, r) in enumerate(self.reveal.items()):
                ax.plot(r.levels, r.accuracy, marker="o", ms=3, color=colours(i % 20), label=LABELS.get(m, m))
            ax.set_xscale("log")
            ax.set_xticks(list(self.reveal[next(iter(self.reveal))].levels), [f"{p:g}" for p in next(iter(self.reveal.values())).levels])
            ax.minorticks_off()  # the log axis' own minor labels would print over the levels
            ax.set_title("only the top p % of pixels shown", fontsize=9)
            ax.set_xlabel("% of pixels shown")
            ax.set_ylabel("accuracy")
        axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
        return atomic_write_bytes(path, figure_png(fig, dpi=100))


class Faithfulness:
    """Evaluation: ROAD MoRF/LeRF curves (and masked-pixel curves) of each method's maps of a split."""

    def __init__(self, model, percentages: Sequence[float] = DEFAULT_PERCENTAGES, imputation: str = "linear",
                 noise: float = NOISE_SIGMA, reveal_levels: Sequence[float] | None = REVEAL_LEVELS, reveal_fill: str = "fixed",
                 batch_size: int = 64, progress: bool = False):
        if imputation not in IMPUTATIONS:
            raise FaithfulnessError(f"imputation: expected one of {', '.join(IMPUTATIONS)}, got {imputation!r}")
        if reveal_fill not in ("fixed", "linear"):
            raise FaithfulnessError(f"reveal_fill: expected fixed (grey) or linear (ROAD imputation), got {reveal_fill!r}")
        self.model, self.imputation, self.noise = model, imputation, noise
        self.percentages = check_percentages(percentages)
        self.reveal_levels = check_percentages(reveal_levels, "reveal levels") if reveal_levels else ()
        self.reveal_fill, self.batch_size, self.progress = reveal_fill, batch_size, progress

    def evaluate(self, split, maps, seed: int = 0) -> FaithfulnessResult:
        from tqdm import tqdm

        n = len(maps.ids)
        if [p.id for p in split.params[:n]] != list(maps.ids):
            raise FaithfulnessError(f"maps: their image ids are not the first {n} of {split!r}; compute them on this split")
        images, labels = split.images[:n], split.true_labels[:n]
        road, reveal = {}, {}
        steps = len(maps.maps) * (2 * len(self.percentages) + len(self.reveal_levels))
        with tqdm(total=steps, desc="faithfulness", unit="curve point", disable=not self.progress, leave=False) as bar:
            for i, (method, a) in enumerate(maps.maps.items()):
                order = pixel_order(a, seed + i)
                seeds = [seed + 1000 * j for j in range(len(self.percentages))]
                probability = {o: self._curve(images, labels, order, self.percentages, self.imputation, seeds, bar,
                                              most_relevant=(o == "morf")) for o in ORDERS}
                road[method] = Curves(self.percentages, probability)
                if self.reveal_levels:
                    seeds = [seed + 5000 + j for j in range(len(self.reveal_levels))]
                    prob = self._curve(images, labels, order, self.reveal_levels, self.reveal_fill, seeds, bar,
                                       shown=True)
                    ce = -np.log(np.clip(prob, 1e-12, 1.0))
                    accuracy = (prob > 0.5).mean(axis=1)
                    reveal[method] = RevealCurves(self.reveal_levels, accuracy, ce.mean(axis=1), ce.mean(axis=0))
        meta = {"data": str(split.root), "split": split.name, "n": n, "imputation": self.imputation, "noise": self.noise,
                "percentages": list(self.percentages), "reveal_levels": list(self.reveal_levels), "reveal_fill": self.reveal_fill}
        return FaithfulnessResult(road, reveal, meta)

    def _curve(self, images, labels, order, levels, imputation: str, seeds, bar, most_relevant: bool = True,
               shown: bool = False) -> np.ndarray:
        """(levels, N): the true-class probability with each level's % most (or least) relevant pixels
        removed, or with all but those removed (`shown`), the images filled and asked in batches."""
        from two4two.models.training import predict_logits  # takes the float images in [0, 1] as they are

        out = np.empty((len(levels), len(images)))
        for j, (percent, seed) in enumerate(zip(levels, seeds)):
            removed = removal_masks(order, images.shape[1:3], percent, most_relevant)
            removed = ~removed if shown else removed
            for start in range(0, len(images), self.batch_size):
                stop = min(len(images), start + self.batch_size)
                filled = impute(images[start:stop], removed[start:stop], imputation, self.noise, seed + start)
                out[j, start:stop] = true_class_probability(predict_logits(self.model, filled), labels[start:stop])
            bar.update()
        return out
