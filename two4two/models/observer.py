"""The observer: a network that reads every attribute back from an image (paper section 5.3).

Trained on an unbiased dataset (no attribute predicts another), it regresses each
continuous attribute scaled to [0, 1] by the range the default sampler draws it from
(the study's Table 5 ranges), yaw as (sin, cos) so the circle has no seam, and
classifies Peeky/Stretchy. Applied to counterfactuals it measures what they really
change (`two4two.explain.audit`); `predict_attributes` checks any image.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
from torch import nn

from two4two.models.inputs import image_batch
from two4two.parameters import ATTRIBUTES, MEASURED_ATTRIBUTES, SceneParameters

OBSERVED = MEASURED_ATTRIBUTES  # the ten attributes importance measures
(YAW,) = (a for a in OBSERVED if ATTRIBUTES[a].circular)  # the one angle, read as (sin, cos)
LINEAR = tuple(a for a in OBSERVED if a != YAW)
# Network outputs: the linear attributes scaled to [0, 1], then sin and cos of yaw, then the label logit.
OUTPUTS = (*LINEAR, "yaw_sin", "yaw_cos", "label_logit")


@functools.cache
def sampling_ranges() -> dict[str, tuple[float, float]]:
    """The range the default sampler draws each linear attribute from: the [0, 1] scale."""
    from two4two.sampling import Sampler

    defaults = Sampler()
    ranges = {}
    for attribute in LINEAR:
        field = getattr(defaults, attribute)
        supports = [d.support() for d in (field.values() if isinstance(field, dict) else [field])]
        ranges[attribute] = (float(min(s[0] for s in supports)), float(max(s[1] for s in supports)))
    return ranges


def encode_yaw(yaw: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(yaw), np.cos(yaw)], axis=-1)


def decode_yaw(sin_cos: np.ndarray) -> np.ndarray:
    """The angle in [0, 2π) of (sin, cos) pairs (any length; only the direction counts)."""
    return np.mod(np.arctan2(sin_cos[..., 0], sin_cos[..., 1]), 2 * np.pi)


def scaled_errors(attribute: str, predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Prediction error on the [0, 1] scale; yaw: the wrapped angle difference over 2π."""
    if ATTRIBUTES[attribute].circular:
        return ATTRIBUTES[attribute].delta(predicted, true) / (2 * np.pi)
    low, high = sampling_ranges()[attribute]
    return (predicted - true) / (high - low)


class Observer(nn.Module):
    """torchvision MobileNetV2 (from scratch) with one output per entry of OUTPUTS.

    `stem_stride` 1 halves the network's total stride (16 instead of 32) for small images.
    `balance_attributes` weighs each output's squared error by 1 / its variance over the
    training targets (normalised to mean 1), so every attribute counts as much as any other
    (each term is 1 − R²). Off by default: on the unbiased data, whose roll spans 3 % of its
    range and is all but invisible, roll then dominates the loss and every other attribute
    is read worse (colour 0.078 instead of 0.0066 in benchmarks/observer.py); it helps when
    every attribute is spread over a visible range, as in the tests' small dataset.
    """

    def __init__(self, width_mult: float = 0.5, label_weight: float = 0.1, stem_stride: int = 2, balance_attributes: bool = False):
        super().__init__()
        import torchvision

        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride: {stem_stride!r} is not 1 or 2")
        self.net = torchvision.models.mobilenet_v2(weights=None, num_classes=len(OUTPUTS), width_mult=width_mult)
        # 2 is MobileNetV2's own (total stride 32); 1 keeps twice the resolution throughout,
        # as small-image adaptations of it do, at four times the cost.
        self.net.features[0][0].stride = (stem_stride, stem_stride)
        self.label_weight = float(label_weight)
        self.balance_attributes = bool(balance_attributes)
        # Per regression output; set from the training targets, saved with the weights.
        self.register_buffer("output_weight", torch.ones(len(OUTPUTS) - 1))
        ranges = sampling_ranges()
        self.register_buffer("low", torch.tensor([ranges[a][0] for a in LINEAR]))
        self.register_buffer("span", torch.tensor([ranges[a][1] - ranges[a][0] for a in LINEAR]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_targets(self, params: Sequence[SceneParameters], label_noise: bool = True) -> np.ndarray:
        """Per sample: the scaled linear attributes, sin and cos of yaw, the (stored) label.

        With `balance_attributes`, these (the training set's) targets also set the loss weights.
        """
        low, span = self.low.cpu().numpy(), self.span.cpu().numpy()
        linear = (np.array([[getattr(p, a) for a in LINEAR] for p in params], np.float64) - low) / span
        yaw = encode_yaw(np.array([p.obj_rotation_yaw for p in params]))
        label = np.array([p.label if label_noise else p.true_label for p in params], np.float64)[:, None]
        targets = np.concatenate([linear, yaw, label], axis=1)
        if self.balance_attributes and len(targets) > 1:
            inverse = 1 / np.maximum(targets[:, :-1].var(axis=0), 1e-8)
            self.output_weight.copy_(torch.from_numpy(inverse / inverse.mean()))
        return targets.astype(np.float32)

    def training_loss(self, x: torch.Tensor, targets: torch.Tensor):
        out = self(x)
        mse = (self.output_weight * (out[:, :-1] - targets[:, :-1]) ** 2).mean()
        bce = nn.functional.binary_cross_entropy_with_logits(out[:, -1], targets[:, -1])
        return mse + self.label_weight * bce, out, {"mse": float(mse.detach()), "bce": float(bce.detach())}

    def predict_attributes(self, images, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Every attribute in its own units (yaw in [0, 2π)) and P(Stretchy), for uint8
        N × H × W × 3 images or a float N × 3 × H × W tensor in [0, 1]."""
        device = self.low.device
        self.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                x = image_batch(chunk) if isinstance(chunk, np.ndarray) else chunk.float()
                outputs.append(self(x.to(device)).double().cpu().numpy())
        out = np.concatenate(outputs) if outputs else np.zeros((0, len(OUTPUTS)))
        low, span = self.low.cpu().numpy(), self.span.cpu().numpy()
        result = {a: out[:, i] * span[i] + low[i] for i, a in enumerate(LINEAR)}
        result[YAW] = decode_yaw(out[:, len(LINEAR) : len(LINEAR) + 2])
        result["stretchy_probability"] = 1 / (1 + np.exp(-out[:, -1]))
        return result

    def validation_record(self, images: np.ndarray, params: Sequence[SceneParameters]) -> dict:
        """Per-attribute MSE on the [0, 1] scale and label accuracy; `score` (higher is better) picks the checkpoint."""
        predicted = self.predict_attributes(images)
        true = {a: np.array([getattr(p, a) for p in params], float) for a in OBSERVED}
        record = {f"mse_{a}": float(np.mean(scaled_errors(a, predicted[a], true[a]) ** 2)) for a in OBSERVED}
        labels = np.array([p.true_label for p in params], bool)
        record["label_accuracy"] = float(((predicted["stretchy_probability"] > 0.5) == labels).mean())
        record["mean_mse"] = float(np.mean([record[f"mse_{a}"] for a in OBSERVED]))
        record["score"] = -record["mean_mse"]
        return record


def attribute_mse_table(record: dict) -> str:
    """The per-attribute MSE lines of a validation record, for printing."""
    lines = [f"{'attribute':<16} {'MSE (0-1 scale)':>16}"]
    lines += [f"{ATTRIBUTES[a].label:<16} {record[f'mse_{a}']:>16.5f}" for a in OBSERVED]
    return "\n".join(lines)


class ObserverCheck:
    """Evaluation: the observer's per-attribute error and label accuracy on a split (are the attributes recoverable?)."""

    def __init__(self, observer: Observer):
        self.observer = observer

    def evaluate(self, split, seed: int = 0) -> dict:
        """The validation record: `mse_<attribute>` on the [0, 1] scale, `label_accuracy`, `mean_mse`."""
        return self.observer.validation_record(split.images, split.params)
