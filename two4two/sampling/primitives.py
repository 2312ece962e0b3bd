"""Distribution primitives: the plain forms a sampler field may take and how to draw from them.

A spec is a frozen scipy.stats distribution, a callable `f(rng, n) -> array`, a constant,
or a dict keyed by class name of any of these (see `two4two.sampling`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy import stats

from two4two.parameters import CLASS_NAMES

RngLike = np.random.Generator | int | np.random.SeedSequence | None


def as_rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def truncnorm(mean: float, std: float, low: float, high: float):
    """Frozen normal(mean, std) truncated to [low, high] (scipy's awkward a/b made plain)."""
    return stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)


def uniform(low: float, high: float):
    """Frozen uniform on [low, high]."""
    return stats.uniform(loc=low, scale=high - low)


def draw(spec: Any, rng: np.random.Generator, n: int, obj_name: np.ndarray | None = None) -> np.ndarray:
    """Draw n values from a distribution spec (see module docstring)."""
    if isinstance(spec, dict):
        if obj_name is None:
            raise ValueError("a per-class distribution needs the class of each sample")
        parts = []
        for cls in CLASS_NAMES:
            where = np.flatnonzero(obj_name == cls)
            if len(where) and cls not in spec:
                raise ValueError(f"no distribution given for class {cls!r}")
            if len(where):
                parts.append((where, draw(spec[cls], rng, len(where))))
        out = np.empty(n, dtype=np.result_type(*(v for _, v in parts)) if parts else np.float64)
        for where, values in parts:
            out[where] = values
        return out
    if hasattr(spec, "rvs"):
        return np.asarray(spec.rvs(size=n, random_state=rng))
    if callable(spec):
        values = np.asarray(spec(rng, n))
        if values.shape != (n,):
            raise ValueError(f"callable distribution returned shape {values.shape}, expected ({n},)")
        return values
    return np.full(n, spec)


def redraw_where(
    values: np.ndarray,
    reject: Callable[[np.ndarray, np.ndarray], np.ndarray],
    spec: Any,
    rng: np.random.Generator,
    max_rounds: int = 1000,
) -> np.ndarray:
    """Vectorised rejection sampling: redraw entries while `reject(values, index)` is true."""
    values = values.copy()
    todo = np.flatnonzero(reject(values, np.arange(len(values))))
    for _ in range(max_rounds):
        if not len(todo):
            return values
        values[todo] = draw(spec, rng, len(todo))
        todo = todo[reject(values[todo], todo)]
    raise RuntimeError(f"rejection sampling did not finish after {max_rounds} rounds")


