"""Distributions written in YAML configs, parsed into what a Sampler field holds.

    obj_color: 0.3                              # a constant
    bg_color: {uniform: [0.05, 0.95]}           # low, high
    bending: {truncnorm: [0, 0.157, -0.314, 0.314]}   # mean, std, low, high
    spherical: {beta: [0.3, 0.3]}
    fliplr: {bernoulli: 0.5}
    arm_position: {peaky: {uniform: [0, 0.52]}, stretchy: {uniform: [0.48, 1]}}
    position_x: {scipy: triang, args: [0.5], loc: -0.8, scale: 0.8}   # any scipy.stats one

A distribution whose support leaves the attribute's valid range is rejected here, so a
config error surfaces on load with its key path, not as a failed render hours later.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats

from two4two.errors import ConfigError, ParameterError
from two4two.parameters import BOOLEAN_ATTRIBUTES, CLASS_NAMES, CONTINUOUS_RANGES, check_value
from two4two.sampling.primitives import truncnorm, uniform

FORMS = ("uniform", "truncnorm", "normal", "beta", "bernoulli", "scipy")


def _numbers(path: str, form: str, raw: Any, count: int, names: str) -> list[float]:
    if isinstance(raw, dict):
        keys = names.split(", ")
        if sorted(raw) != sorted(keys):
            raise ConfigError(f"{path}.{form}: expected keys {names}, got {', '.join(map(str, raw))}")
        raw = [raw[k] for k in keys]
    if (
        not isinstance(raw, list)
        or len(raw) != count
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) for v in raw)
    ):
        raise ConfigError(f"{path}.{form}: expected {count} numbers [{names}], got {raw!r}")
    return [float(v) for v in raw]


def _build(form: str, raw: Any, spec: dict, path: str):
    if form == "uniform":
        low, high = _numbers(path, form, raw, 2, "low, high")
        if not low < high:
            raise ConfigError(f"{path}.uniform: low must be below high, got [{low}, {high}]")
        return uniform(low, high)
    if form == "truncnorm":
        mean, std, low, high = _numbers(path, form, raw, 4, "mean, std, low, high")
        if not (std > 0 and low < high):
            raise ConfigError(f"{path}.truncnorm: need std > 0 and low < high, got {raw!r}")
        return truncnorm(mean, std, low, high)
    if form == "normal":
        mean, std = _numbers(path, form, raw, 2, "mean, std")
        if not std > 0:
            raise ConfigError(f"{path}.normal: std must be positive, got {std}")
        return stats.norm(mean, std)
    if form == "beta":
        a, b = _numbers(path, form, raw, 2, "a, b")
        if not (a > 0 and b > 0):
            raise ConfigError(f"{path}.beta: a and b must be positive, got {raw!r}")
        return stats.beta(a, b)
    if form == "bernoulli":
        (p,) = _numbers(path, form, [raw] if not isinstance(raw, list) else raw, 1, "p")
        if not 0 <= p <= 1:
            raise ConfigError(f"{path}.bernoulli: p must be in [0, 1], got {p}")
        return stats.bernoulli(p)
    if form == "scipy":
        dist = getattr(stats, raw, None) if isinstance(raw, str) else None
        if not isinstance(dist, (stats.rv_continuous, stats.rv_discrete)):
            raise ConfigError(f"{path}.scipy: {raw!r} is not a scipy.stats distribution")
        extra = set(spec) - {"scipy", "args", "loc", "scale"}
        if extra:
            raise ConfigError(f"{path}.{sorted(extra)[0]}: unknown key; allowed: scipy, args, loc, scale")
        args = spec.get("args", [])
        if not isinstance(args, list):
            raise ConfigError(f"{path}.args: expected a list of numbers, got {args!r}")
        try:
            return dist(*args, loc=spec.get("loc", 0), scale=spec.get("scale", 1))
        except Exception as exc:  # scipy raises several types for bad shapes
            raise ConfigError(f"{path}.scipy: cannot build {raw}({args}) ({exc})") from None
    raise AssertionError(form)


def _check_support(dist: Any, path: str, attribute: str | None) -> None:
    if attribute is None:
        return
    low, high = dist.support()
    if attribute in CONTINUOUS_RANGES:
        lo, hi = CONTINUOUS_RANGES[attribute]
        if low < lo or high > hi:
            raise ConfigError(
                f"{path}: this distribution can produce values in [{low:.6g}, {high:.6g}], outside "
                f"{attribute}'s allowed range [{lo:.6g}, {hi:.6g}] (use uniform or truncnorm bounds)"
            )
    elif attribute in BOOLEAN_ATTRIBUTES or attribute == "obj_name":
        if low < 0 or high > 1:
            raise ConfigError(f"{path}: {attribute} needs a distribution on {{0, 1}} such as bernoulli")


def parse_distribution(raw: Any, path: str, attribute: str | None = None) -> Any:
    """A Sampler field value from its YAML form; `path` names the key in errors."""
    if isinstance(raw, dict) and raw and set(raw) <= set(CLASS_NAMES):
        return {cls: parse_distribution(v, f"{path}.{cls}", attribute) for cls, v in raw.items()}
    if isinstance(raw, dict):
        forms = [k for k in raw if k in FORMS]
        if len(forms) != 1:
            raise ConfigError(
                f"{path}: expected one of {', '.join(FORMS)}, or per-class keys {', '.join(CLASS_NAMES)}; "
                f"got keys {', '.join(map(str, raw)) or 'none'}"
            )
        form = forms[0]
        if form != "scipy" and len(raw) != 1:
            extra = sorted(k for k in raw if k != form)
            raise ConfigError(f"{path}.{extra[0]}: unknown key; allowed: {form} alone")
        dist = _build(form, raw[form], raw, path)
        _check_support(dist, path, attribute)
        return dist
    if isinstance(raw, list):
        raise ConfigError(f"{path}: a list is not a distribution; write e.g. {{uniform: {raw!r}}}")
    if attribute is not None:
        try:
            check_value(attribute, raw)
        except ParameterError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return raw
