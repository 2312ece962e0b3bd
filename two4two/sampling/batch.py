"""SceneBatch: many parameter sets as columns, fast to draw, validate and intervene on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from two4two.errors import ParameterError
from two4two.parameters import (BOOLEAN_ATTRIBUTES, CLASS_NAMES, CONTINUOUS_RANGES, SAMPLED_ATTRIBUTES, SEQUENCE_FIELDS,
                                SceneParameters, check_value)

# Scene fields set once per batch rather than drawn per sample.
SETTINGS = ("resolution", "colormap", "colormap_upper_scale", "hidden_blocks")


def attribute_columns(params: Sequence[SceneParameters]) -> dict[str, np.ndarray]:
    """The id and every sampled attribute of many parameter sets, as columns."""
    return {k: np.array([getattr(p, k) for p in params]) for k in ("id", *SAMPLED_ATTRIBUTES)}


def _settings(obj) -> dict:
    """The SETTINGS of a parameter set, a batch or a sampler, sequences as tuples."""
    return {k: tuple(getattr(obj, k)) if k in SEQUENCE_FIELDS else getattr(obj, k) for k in SETTINGS}


def _random_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.array([f"{v:016x}" for v in rng.integers(0, 2**63, size=n, dtype=np.int64).tolist()])


@dataclass
class SceneBatch:
    """Many parameter sets as columns: fast to draw, validate and intervene on.

    Index or iterate it to get `SceneParameters` objects.
    """

    columns: dict[str, np.ndarray]
    resolution: tuple[int, int] = (128, 128)
    colormap: str = "coolwarm"
    colormap_upper_scale: float = 1.0
    original_id: np.ndarray | None = None
    changed_attributes: tuple[str, ...] = ()
    hidden_blocks: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.columns["id"])

    def __getitem__(self, i: int) -> SceneParameters:
        return self._materialise([range(len(self))[i]])[0]

    def __iter__(self) -> Iterator[SceneParameters]:
        return iter(self.to_list())

    def to_list(self) -> list[SceneParameters]:
        return self._materialise(range(len(self)))

    def _materialise(self, index: Sequence[int]) -> list[SceneParameters]:
        # Values were validated column-wise in validate(); build objects without a
        # second per-object check so that materialising stays cheap.
        index = np.asarray(index, dtype=np.int64)
        cols = {k: self.columns[k][index].tolist() for k in ("id", *SAMPLED_ATTRIBUTES)}
        originals = self.original_id[index].tolist() if self.original_id is not None else [None] * len(index)
        shared = {**_settings(self), "changed_attributes": tuple(self.changed_attributes)}
        out = []
        names = list(cols)
        for row, original in zip(zip(*cols.values()), originals):
            p = object.__new__(SceneParameters)
            p.__dict__.update(zip(names, row))
            p.__dict__.update(shared)
            p.__dict__["original_id"] = original
            out.append(p)
        return out

    def validate(self) -> "SceneBatch":
        """Check every column at once; the error names the attribute, value and sample."""
        for name in SETTINGS:
            check_value(name, getattr(self, name))
        n = len(self)
        for name in SAMPLED_ATTRIBUTES:
            col = self.columns.get(name)
            if col is None or col.shape != (n,):
                raise ParameterError(f"{name}: sampler produced no column of {n} values")
            if name in CONTINUOUS_RANGES:
                if col.dtype.kind not in "fiu":
                    raise ParameterError(f"{name}: sampler produced non-numeric values ({col.dtype})")
                low, high = CONTINUOUS_RANGES[name]
                bad = np.flatnonzero(~((col >= low) & (col <= high)))
                if len(bad):
                    i = bad[0]
                    raise ParameterError(
                        f"{name}: sampler produced {col[i]!r} (sample {i}), outside the allowed "
                        f"range [{low:.6g}, {high:.6g}]"
                    )
                if col.dtype.kind != "f":
                    self.columns[name] = col.astype(np.float64)
            elif name in BOOLEAN_ATTRIBUTES:
                if col.dtype.kind == "b":
                    continue
                if col.dtype.kind in "iu" and np.isin(col, (0, 1)).all():
                    self.columns[name] = col.astype(bool)
                    continue
                raise ParameterError(f"{name}: sampler produced non-boolean values {col[:3]!r}")
            elif name == "obj_name":
                bad = np.flatnonzero(~np.isin(col, CLASS_NAMES))
                if len(bad):
                    raise ParameterError(
                        f"obj_name: sampler produced {col[bad[0]]!r} (sample {bad[0]}); "
                        f"allowed: {', '.join(CLASS_NAMES)}"
                    )
        return self

    @classmethod
    def from_params(cls, params: Sequence[SceneParameters]) -> "SceneBatch":
        """Columns from parameter objects that share resolution, colormap and provenance kind."""
        if not params:
            raise ValueError("cannot build a batch from no parameters")
        first = params[0]
        for p in params:
            for name in SETTINGS:
                if getattr(p, name) != getattr(first, name):
                    raise ValueError(f"{name} differs within the batch ({getattr(p, name)!r} vs {getattr(first, name)!r})")
        changed = {tuple(p.changed_attributes) for p in params}
        if len(changed) != 1:
            raise ValueError("changed_attributes differ within the batch")
        originals = [p.original_id for p in params]
        original_id = None if all(o is None for o in originals) else np.array(originals, dtype=object)
        return cls(attribute_columns(params), original_id=original_id, changed_attributes=changed.pop(),
                   **_settings(first))


