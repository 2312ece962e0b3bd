"""Ground-truth feature importance: how much a model really relies on each attribute.

For every original test image x and every intervened attribute a, the dataset holds x′,
identical but for a redrawn by interventional sampling. With Δlogit = f(x′) − f(x) and
Δa = a′ − a (yaw: the wrapped angular difference) we report per attribute (Sixt et al.
2022, section 3): prediction flip % (the predicted class changes), median and mean
|Δlogit|, and R² and slope of the OLS fit Δlogit ~ Δa (how *directed* the reliance is),
each with a bootstrap 95% interval.

A model is an `torch.nn.Module` or any callable mapping an image batch (B×3×H×W float in
[0, 1]) to B logits (> 0: Stretchy). A callable with `reads_parameters = True` is called
with the batch's SceneParameters instead (test doubles, oracle models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from two4two.dataset import DatasetError, read_split
from two4two.intervals import Interval, bootstrap_interval, markdown_table
from two4two.io import atomic_write_csv, atomic_write_text
from two4two.layout import has_split, intervened_attributes
from two4two.parameters import ATTRIBUTES, MEASURED_ATTRIBUTES, SceneParameters
from two4two.split import Split


def as_numeric(attribute: str, params: Sequence[SceneParameters]) -> np.ndarray:
    if attribute == "obj_name":
        return np.array([p.obj_name == "stretchy" for p in params], float)
    return np.array([float(getattr(p, attribute)) for p in params])


@dataclass
class AttributeImportance:
    attribute: str
    n: int
    flip_percent: Interval
    median_abs_delta_logit: Interval
    mean_abs_delta_logit: Interval
    r_squared: Interval
    slope: Interval
    data_mi_given_legs: float = float("nan")
    data_threshold_accuracy: float = float("nan")


@dataclass
class ImportanceResult:
    rows: list[AttributeImportance]
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)  # attribute -> (Δa, Δlogit)
    accuracy: float = float("nan")
    model_name: str = "model"

    def format_table(self) -> str:
        head = f"{'attribute':<16} {'flip %':>22} {'median |Δlogit|':>24} {'R²':>22} {'slope':>24} {'data MI|legs':>13}"
        lines = [
            f"Ground-truth importance of {self.model_name} (n pairs per attribute, bootstrap 95% intervals; "
            f"test accuracy {self.accuracy:.4f})",
            head,
            "-" * len(head),
        ]
        for r in self.rows:
            lines.append(
                f"{ATTRIBUTES[r.attribute].label:<16} {r.flip_percent.fmt(2):>22} {r.median_abs_delta_logit.fmt():>24} "
                f"{r.r_squared.fmt():>22} {r.slope.fmt():>24} {r.data_mi_given_legs:>13.4f}"
            )
        lines.append(
            "data MI|legs: what the attribute tells about the class beyond the legs in the training data "
            "(nats; for the legs themselves: their MI with the class)."
        )
        return "\n".join(lines)

    def records(self) -> list[dict]:
        out = []
        for r in self.rows:
            rec = {"attribute": r.attribute, "n": r.n}
            for name in ("flip_percent", "median_abs_delta_logit", "mean_abs_delta_logit", "r_squared", "slope"):
                iv: Interval = getattr(r, name)
                rec[name], rec[f"{name}_low"], rec[f"{name}_high"] = iv.value, iv.low, iv.high
            rec.update(data_mi_given_legs=r.data_mi_given_legs, data_threshold_accuracy=r.data_threshold_accuracy)
            out.append(rec)
        return out

    def write(self, out_dir: str | Path, stem: str = "importance") -> dict[str, Path]:
        """CSV, Markdown, the Δlogit-against-Δattribute figure and reliance against data bias."""
        out_dir = Path(out_dir)
        return {
            "csv": atomic_write_csv(out_dir / f"{stem}.csv", self.records()),
            "markdown": self.write_markdown(out_dir / f"{stem}.md"),
            "figure": self.plot(out_dir / f"{stem}.png"),
            "reliance_vs_bias": plot_reliance_vs_bias(self, out_dir / f"{stem}_vs_data_bias.png"),
        }

    def write_markdown(self, path: str | Path) -> Path:
        head = ["factor", "flip %", "median \\|Δlogit\\|", "mean \\|Δlogit\\|", "R²", "slope", "data MI given legs"]
        rows = ([ATTRIBUTES[r.attribute].label, r.flip_percent.fmt(2), r.median_abs_delta_logit.fmt(),
                 r.mean_abs_delta_logit.fmt(), r.r_squared.fmt(), r.slope.fmt(), f"{r.data_mi_given_legs:.4f}"]
                for r in self.rows)
        title = (f"Ground-truth importance of {self.model_name} (test accuracy {self.accuracy:.4f}; "
                 "95% bootstrap intervals)")
        return atomic_write_text(path, f"{title}\n\n{markdown_table(head, rows)}\n")

    def plot(self, path: str | Path) -> Path:
        """One scatter of Δlogit against Δattribute per attribute, with the OLS line."""
        from two4two.plotting import pyplot, save_figure

        plt = pyplot()
        n = len(self.rows)
        cols = min(5, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.9 * rows), squeeze=False)
        for ax, r in zip(axes.flat, self.rows):
            da, dl = self.pairs[r.attribute]
            ax.scatter(da, dl, s=4, alpha=0.4, linewidths=0, color="#3b6fb6")
            if not math.isnan(r.slope.value):
                xs = np.linspace(da.min(), da.max(), 2)
                intercept = dl.mean() - r.slope.value * da.mean()
                ax.plot(xs, intercept + r.slope.value * xs, color="#d1495b", lw=1.5)
            ax.axhline(0, color="grey", lw=0.5)
            ax.set_title(f"{ATTRIBUTES[r.attribute].label}\nR² {r.r_squared.value:.3f}, flip {r.flip_percent.value:.1f}%", fontsize=8)
            ax.set_xlabel("Δ attribute", fontsize=7)
            ax.set_ylabel("Δ logit", fontsize=7)
            ax.tick_params(labelsize=6)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        return save_figure(fig, path, f"Δlogit against Δattribute: {self.model_name}")


def plot_reliance_vs_bias(result: "ImportanceResult", path: str | Path) -> Path:
    """Model reliance (R², flip %) beside data bias (MI with the class given the legs), per attribute."""
    from two4two.plotting import pyplot, save_figure

    plt = pyplot()
    rows = result.rows[::-1]
    names = [ATTRIBUTES[r.attribute].label for r in rows]
    y = np.arange(len(rows))
    panels = [
        ("model: R² of Δlogit ~ Δattribute", [r.r_squared for r in rows], "#3b6fb6"),
        ("model: prediction flip %", [r.flip_percent for r in rows], "#5b8e7d"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.35 * len(rows) + 1.6), sharey=True)
    for ax, (title, intervals, colour) in zip(axes, panels):
        values = np.array([0 if math.isnan(iv.value) else iv.value for iv in intervals])
        low = np.array([0 if math.isnan(iv.low) else iv.value - iv.low for iv in intervals])
        high = np.array([0 if math.isnan(iv.high) else iv.high - iv.value for iv in intervals])
        ax.barh(y, values, xerr=np.vstack([np.clip(low, 0, None), np.clip(high, 0, None)]), color=colour, capsize=2)
        ax.set_title(title, fontsize=9)
    bias = [0 if math.isnan(r.data_mi_given_legs) else r.data_mi_given_legs for r in rows]
    axes[2].barh(y, bias, color="#d1495b")
    axes[2].set_title("data: MI with the class given the legs (nats)\n(legs: MI with the class)", fontsize=9)
    axes[0].set_yticks(y, names, fontsize=8)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    return save_figure(fig, path, f"Model reliance vs data bias: {result.model_name}")


def _r_squared(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    sxy = (xc * yc).sum(axis=axis)
    sxx = (xc * xc).sum(axis=axis)
    syy = (yc * yc).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sxy**2 / (sxx * syy)


def _slope(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis=axis) / (xc * xc).sum(axis=axis)


def summarise_pairs(
    attribute: str,
    logits: np.ndarray,
    new_logits: np.ndarray,
    delta_attribute: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
) -> AttributeImportance:
    """The per-attribute row from paired logits and attribute changes."""
    import statsmodels.api as sm

    delta = new_logits - logits
    flips = ((new_logits > 0) != (logits > 0)).astype(float)
    abs_delta = np.abs(delta)
    if np.ptp(delta_attribute) > 0 and np.ptp(delta) > 0:  # else R² is undefined (0/0)
        fit = sm.OLS(delta, sm.add_constant(delta_attribute)).fit()
        r2, slope = float(fit.rsquared), float(fit.params[1])
    else:
        r2 = slope = float("nan")
    r2_iv = bootstrap_interval((delta_attribute, delta), _r_squared, n_resamples, seed)
    slope_iv = bootstrap_interval((delta_attribute, delta), _slope, n_resamples, seed + 1)
    return AttributeImportance(
        attribute=attribute,
        n=len(delta),
        flip_percent=bootstrap_interval((flips * 100,), np.mean, n_resamples, seed + 2),
        median_abs_delta_logit=bootstrap_interval((abs_delta,), np.median, n_resamples, seed + 3),
        mean_abs_delta_logit=bootstrap_interval((abs_delta,), np.mean, n_resamples, seed + 4),
        # Point estimates from statsmodels' OLS; intervals from the bootstrap of the same fit.
        r_squared=Interval(r2, r2_iv.low, r2_iv.high),
        slope=Interval(slope, slope_iv.low, slope_iv.high),
    )


def available_interventions(root: str | Path, split: str) -> list[str]:
    """Attributes with an intervention split of `split`, in the paper's order (others after)."""
    found = intervened_attributes(root, split)
    rank = {a: i for i, a in enumerate(MEASURED_ATTRIBUTES)}
    return sorted(found, key=lambda a: (rank.get(a, len(rank)), a))


class Importance:
    """Evaluation: the importance table of a model on a split with intervention splits (see module docstring).

    The data-bias column describes `training_params` (the model's training data) when
    given, else the `data_bias_split` of the evaluated split's dataset.
    """

    def __init__(
        self,
        model: Any,
        attributes: Sequence[str] | None = None,
        n_resamples: int = 1000,
        model_name: str = "model",
        data_bias_split: str | None = "train",
        training_params: Sequence[SceneParameters] | None = None,
    ):
        self.model, self.attributes, self.n_resamples, self.model_name = model, attributes, n_resamples, model_name
        self.data_bias_split, self.training_params = data_bias_split, training_params

    def evaluate(self, split: Split, seed: int = 0) -> ImportanceResult:
        from two4two.bias_report import describe

        root, originals = split.root, split.params
        attributes = list(self.attributes) if self.attributes else (available_interventions(root, split.name) or list(MEASURED_ATTRIBUTES))
        split.require_interventions(attributes)
        logits = split.logits(self.model)
        accuracy = float(((logits > 0) == split.true_labels).mean())
        index = {p.id: i for i, p in enumerate(originals)}

        training_params = self.training_params
        if training_params is None and self.data_bias_split and has_split(root, self.data_bias_split):
            training_params = read_split(root, self.data_bias_split)
        bias = {b.attribute: b for b in describe(training_params)} if training_params else {}

        rows, pairs = [], {}
        for k, attribute in enumerate(attributes):
            intervened = split.intervention(attribute)
            changed = intervened.params
            try:
                order = np.array([index[p.original_id] for p in changed])
            except KeyError as exc:
                raise DatasetError(f"{root}/{intervened.name}: sample points to original {exc.args[0]!r}, which is not in {split.name!r}") from None
            bad = [p.id for p in changed if p.changed_attributes != (attribute,)]
            if bad:
                raise DatasetError(f"{root}/{intervened.name}: sample {bad[0]} did not change only {attribute}")
            new_logits = intervened.logits(self.model)
            base = [originals[i] for i in order]
            da = ATTRIBUTES[attribute].delta(as_numeric(attribute, changed), as_numeric(attribute, base))
            row = summarise_pairs(attribute, logits[order], new_logits, da, self.n_resamples, seed + 10 * k)
            b = bias.get(attribute)
            if b is not None:
                row.data_mi_given_legs = b.mutual_information if attribute == "arm_position" else b.mutual_information_given_legs
                row.data_threshold_accuracy = b.threshold_accuracy
            rows.append(row)
            pairs[attribute] = (da, new_logits - logits[order])
        return ImportanceResult(rows, pairs, accuracy, self.model_name)


