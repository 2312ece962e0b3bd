"""What counterfactuals really change: the observer reads attributes along INN interpolations.

Paper section 5.3, Table 6 and Figure 5: for many test images, counterfactual
interpolations spanning 99% of the INN's logit distribution; the observer predicts every
attribute on every step; per attribute, the change along an interpolation (max − min on
the [0, 1] scale of `two4two.models.observer`) averaged over images. An attribute the
model ignores should barely move; one it relies on should sweep its range. The observer is
also applied to the original images, so its own error is on record beside the audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from two4two.errors import Two4TwoError
from two4two.explain.counterfactual import counterfactuals, require_invertible, spanning_quantiles, target_logits
from two4two.io import atomic_write_csv, atomic_write_text
from two4two.models.observer import OBSERVED, sampling_ranges
from two4two.parameters import ATTRIBUTES


def to_unit_scale(attribute: str, values: np.ndarray) -> np.ndarray:
    """Attribute values on the observer's [0, 1] scale; yaw as turns, unwrapped along the last axis."""
    if ATTRIBUTES[attribute].circular:
        return np.unwrap(values, axis=-1) / (2 * np.pi)
    low, high = sampling_ranges()[attribute]
    return (values - low) / (high - low)


PLAUSIBLE = (-0.05, 1.05)  # readings outside the sampled range (with a margin) are no longer an animal of the data


def interpolation_ranges(values: np.ndarray) -> np.ndarray:
    """max − min along each interpolation (rows: images, columns: steps)."""
    return values.max(axis=-1) - values.min(axis=-1)


def share_text(value: float) -> str:
    """A share from `AuditResult.inside` as a percentage, "–" where it does not apply (yaw)."""
    return "–" if np.isnan(value) else f"{100 * value:.1f} %"


@dataclass
class AuditResult:
    targets: np.ndarray  # the T logits of every interpolation
    observed: dict[str, np.ndarray]  # attribute → N × T on the [0, 1] scale
    original_mse: dict[str, float]  # the observer's error on the unmodified images
    ids: list[str] = field(default_factory=list)

    def change(self) -> dict[str, tuple[float, float]]:
        """Per attribute: mean and std over images of max − min along the interpolation."""
        return {a: (float(r.mean()), float(r.std())) for a, r in ((a, interpolation_ranges(v)) for a, v in self.observed.items())}

    def inside(self, low: float = PLAUSIBLE[0], high: float = PLAUSIBLE[1]) -> dict[str, float]:
        """Per attribute: the share of all readings along the interpolations within [low, high]
        of the [0, 1] scale (NaN for yaw, a circle with no outside). Counterfactuals that move an
        attribute past its range (shape 1.8) have left the data: they change it by texture."""
        return {a: float("nan") if ATTRIBUTES[a].circular else float(np.mean((v >= low) & (v <= high)))
                for a, v in self.observed.items()}

    def format_table(self) -> str:
        change, inside = self.change(), self.inside()
        lines = [
            f"Counterfactual audit: {len(self.ids)} interpolations × {len(self.targets)} steps, "
            f"logits {self.targets[0]:+.2f} … {self.targets[-1]:+.2f}",
            f"{'attribute':<16} {'mean max−min':>13} {'std':>8} {'in [-0.05, 1.05]':>17} {'observer MSE':>13}",
        ]
        for a in sorted(change, key=lambda a: -change[a][0]):
            lines.append(f"{ATTRIBUTES[a].label:<16} {change[a][0]:>13.3f} {change[a][1]:>8.3f} {share_text(inside[a]):>17} "
                         f"{self.original_mse[a]:>13.5f}")
        return "\n".join(lines)

    def write(self, out_dir: str | Path, stem: str = "audit") -> dict[str, Path]:
        """CSV and Markdown of the table and the Figure-5-style plot."""
        out_dir = Path(out_dir)
        change, inside = self.change(), self.inside()
        rows = [
            {"attribute": a, "label": ATTRIBUTES[a].label, "mean_max_minus_min": change[a][0], "std_max_minus_min": change[a][1],
             "share_inside_range": inside[a], "observer_mse_on_originals": self.original_mse[a]}
            for a in sorted(change, key=lambda a: -change[a][0])
        ]
        md = ["| attribute | mean max−min | std | readings in [−0.05, 1.05] | observer MSE on originals |", "|---|---|---|---|---|"]
        md += [f"| {r['label']} | {r['mean_max_minus_min']:.3f} | {r['std_max_minus_min']:.3f} | {share_text(r['share_inside_range'])} "
               f"| {r['observer_mse_on_originals']:.5f} |" for r in rows]
        return {"csv": atomic_write_csv(out_dir / f"{stem}.csv", rows),
                "md": atomic_write_text(out_dir / f"{stem}.md", "\n".join(md) + "\n"),
                "png": self.plot(out_dir / f"{stem}.png")}

    def plot(self, path: str | Path, max_lines: int = 50) -> Path:
        """Attribute value against target logit, one line per image (paper Figure 5)."""
        from two4two.plotting import pyplot, save_figure

        plt = pyplot()
        attributes = [a for a in OBSERVED if a in self.observed]
        change = self.change()
        cols = 5
        fig, axes = plt.subplots(int(np.ceil(len(attributes) / cols)), cols, figsize=(3.0 * cols, 2.6 * np.ceil(len(attributes) / cols)), squeeze=False)
        for ax, a in zip(axes.flat, attributes):
            for line in self.observed[a][:max_lines]:
                ax.plot(self.targets, line - (line[0] if ATTRIBUTES[a].circular else 0), lw=0.7, alpha=0.5)
            mean, std = change[a]
            ax.set_title(f"{ATTRIBUTES[a].label}: Δ {mean:.2f} ± {std:.2f}", fontsize=9)
            ax.set_xlabel("target logit", fontsize=8)
            ax.set_ylim(*((-0.5, 0.5) if ATTRIBUTES[a].circular else (-0.05, 1.05)))
        for ax in list(axes.flat)[len(attributes):]:
            ax.axis("off")
        return save_figure(fig, path, "Observer's reading of each attribute along INN counterfactual interpolations (yaw: turns from the start)")


class CounterfactualAudit:
    """Evaluation: interpolate `images` images of a split over `steps` logits spanning `coverage`
    of the INN's logits, and let the observer read every attribute on every step."""

    def __init__(self, inn, observer, images: int = 100, steps: int = 11, coverage: float = 0.99,
                 batch_size: int = 16, progress: bool = False):
        require_invertible(inn, "inn")
        self.inn, self.observer, self.images, self.steps, self.coverage = inn, observer, images, steps, coverage
        self.batch_size, self.progress = batch_size, progress

    def evaluate(self, split, seed: int = 0) -> AuditResult:
        import torch
        from tqdm import tqdm

        from two4two.models.inputs import image_batch

        data, params, images, steps = split.images, split.params, self.images, self.steps
        if not 1 <= images <= len(data):
            raise Two4TwoError(f"images: {images} must be between 1 and the split's {len(data)} images")
        targets = target_logits(split.logits(self.inn), spanning_quantiles(self.coverage, steps))
        record = self.observer.validation_record(data, params)  # the observer's error on the unmodified images
        original_mse = {a: record[f"mse_{a}"] for a in OBSERVED}

        chosen = np.sort(np.random.default_rng(seed).choice(len(data), size=images, replace=False))
        observed = {a: np.empty((images, steps)) for a in OBSERVED}
        for start in tqdm(range(0, images, self.batch_size), desc="audit", unit="batch", disable=not self.progress):
            idx = chosen[start : start + self.batch_size]
            moved, _ = counterfactuals(self.inn, image_batch(data[idx]), torch.from_numpy(targets).float())
            flat = moved.clamp(0, 1).reshape(-1, *moved.shape[2:])
            predicted = self.observer.predict_attributes(flat)
            for a in OBSERVED:
                observed[a][start : start + len(idx)] = predicted[a].reshape(len(idx), steps)
        scaled = {a: to_unit_scale(a, v) for a, v in observed.items()}
        return AuditResult(targets=targets, observed=scaled, original_mse=original_mse, ids=[params[i].id for i in chosen])
