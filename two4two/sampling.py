"""The sampling engine: dataclass samplers whose fields are attribute distributions.

A field of a `Sampler` named after a scene attribute holds its distribution, one of
  * a frozen scipy.stats distribution (anything with `.rvs(size=, random_state=)`),
  * a callable `f(rng, n) -> array`,
  * a constant (number, bool, or class name),
  * a dict keyed by class name ("peaky", "stretchy") of any of the above.
Dependencies on the label or on other attributes are methods named `draw_<attribute>`
(see `samplers/study2022.py`); they see every attribute drawn before theirs.

Everything is drawn for many samples at once: one vectorised call per attribute per
batch, never one scipy call per attribute per sample.

Interventions (`intervene`) redraw one attribute as if it were independent of the label
and of every other attribute: by default from its marginal distribution under the
sampler, i.e. the value that attribute takes in a fresh, independent sample.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np
from scipy import stats

from two4two.errors import ConfigError, ParameterError
from two4two.parameters import (
    BOOLEAN_ATTRIBUTES,
    CLASS_NAMES,
    CONTINUOUS_RANGES,
    FIELD_NAMES,
    SAMPLED_ATTRIBUTES,
    SceneParameters,
    check_value,
)

RngLike = np.random.Generator | int | np.random.SeedSequence | None
# Scene fields set once per batch rather than drawn per sample.
SETTINGS = ("resolution", "colormap", "colormap_upper_scale")


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


def attribute_columns(params: Sequence[SceneParameters]) -> dict[str, np.ndarray]:
    """The id and every sampled attribute of many parameter sets, as columns."""
    return {k: np.array([getattr(p, k) for p in params]) for k in ("id", *SAMPLED_ATTRIBUTES)}


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
        shared = {
            "resolution": tuple(self.resolution),
            "colormap": self.colormap,
            "colormap_upper_scale": self.colormap_upper_scale,
            "changed_attributes": tuple(self.changed_attributes),
        }
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
        columns = attribute_columns(params)
        originals = [p.original_id for p in params]
        changed = {tuple(p.changed_attributes) for p in params}
        if len(changed) != 1:
            raise ValueError("changed_attributes differ within the batch")
        return cls(
            columns,
            tuple(first.resolution),
            first.colormap,
            first.colormap_upper_scale,
            None if all(o is None for o in originals) else np.array(originals, dtype=object),
            changed.pop(),
        )


@dataclass
class Sampler:
    """Default distributions: every attribute independent of the label except the legs.

    Subclass it (a dataclass) to change distributions or add dependencies; see
    `samplers/` for the catalogue.
    """

    # 1 = stretchy, 0 = peaky.
    obj_name: Any = field(default_factory=lambda: stats.bernoulli(0.5))
    # The legs' position defines the class; [0.48, 0.52] is ambiguous by design.
    arm_position: Any = field(
        default_factory=lambda: {"peaky": uniform(0.0, 0.52), "stretchy": uniform(0.48, 1.0)}
    )
    obj_color: Any = field(default_factory=lambda: uniform(0.0, 1.0))
    bg_color: Any = field(default_factory=lambda: uniform(0.05, 0.95))
    spherical: Any = field(default_factory=lambda: uniform(0.0, 1.0))
    bending: Any = field(default_factory=lambda: truncnorm(0.0, np.pi / 20, -np.pi / 10, np.pi / 10))
    obj_rotation_roll: Any = field(default_factory=lambda: truncnorm(0.0, 0.03 * np.pi / 4, -np.pi / 4, np.pi / 4))
    obj_rotation_pitch: Any = field(default_factory=lambda: truncnorm(0.0, np.pi / 8, -np.pi / 6, np.pi / 6))
    obj_rotation_yaw: Any = field(default_factory=lambda: uniform(0.0, 2 * np.pi))
    position_x: Any = field(default_factory=lambda: uniform(-0.8, 0.0))
    position_y: Any = field(default_factory=lambda: uniform(-0.8, 0.0))
    fliplr: Any = False
    labeling_error: Any = False
    resolution: tuple[int, int] = (128, 128)
    colormap: str = "coolwarm"
    colormap_upper_scale: float = 1.0
    # Attributes whose draw_<attribute> method ignores the field, with the fields that
    # steer it instead: overriding such a field in a config is an error, not a no-op.
    method_drawn: ClassVar[dict[str, str]] = {}

    # ---- drawing -------------------------------------------------------------

    def sample(self, n: int, rng: RngLike = None) -> SceneBatch:
        """Draw n parameter sets at once (validated)."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ParameterError(f"n: expected a non-negative integer, got {n!r}")
        rng = as_rng(rng)
        cols: dict[str, np.ndarray] = {"id": _random_ids(rng, n)}
        for name in SAMPLED_ATTRIBUTES:
            custom = getattr(self, f"draw_{name}", None)
            cols[name] = custom(rng, n, cols) if custom else self.draw_default(name, rng, n, cols)
        return SceneBatch(cols, tuple(self.resolution), self.colormap, self.colormap_upper_scale).validate()

    def draw_default(self, name: str, rng: np.random.Generator, n: int, cols: dict[str, np.ndarray]) -> np.ndarray:
        """Draw attribute `name` from its field, independent of anything but the class."""
        values = draw(getattr(self, name), rng, n, cols.get("obj_name"))
        if name == "obj_name" and values.dtype.kind in "biuf":
            values = np.where(values.astype(bool), "stretchy", "peaky")
        return values

    def marginal(self, name: str, rng: np.random.Generator, n: int) -> np.ndarray:
        """n independent draws of attribute `name` from its marginal distribution.

        Drawn from fresh, independent samples, so the values are independent of the
        label and every other attribute of whatever sample they are put into.
        """
        return self.sample(n, rng).columns[name]

    # ---- interventions -------------------------------------------------------

    def intervene(
        self,
        params: SceneParameters | SceneBatch,
        attribute: str,
        value: Any = None,
        rng: RngLike = None,
    ) -> SceneParameters | SceneBatch:
        """A copy in which only `attribute` differs: set to `value`, or redrawn marginally.

        The copy gets a new id, `original_id` = the source's id and
        `changed_attributes` = (attribute,).
        """
        if attribute not in SAMPLED_ATTRIBUTES:
            raise ParameterError(
                f"{attribute!r} cannot be intervened on; allowed: {', '.join(SAMPLED_ATTRIBUTES)}"
            )
        rng = as_rng(rng)
        single = isinstance(params, SceneParameters)
        batch = SceneBatch.from_params([params]) if single else params
        n = len(batch)
        if value is None:
            new_values = self.marginal(attribute, rng, n)
        else:
            check_value(attribute, value)
            new_values = np.full(n, value)
        columns = dict(batch.columns)
        columns[attribute] = new_values
        columns["id"] = _random_ids(rng, n)
        out = SceneBatch(
            columns,
            batch.resolution,
            batch.colormap,
            batch.colormap_upper_scale,
            original_id=np.asarray(batch.columns["id"], dtype=object),
            changed_attributes=(attribute,),
        ).validate()
        return out[0] if single else out

    # ---- construction from configs --------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def with_overrides(self, overrides: dict[str, Any], where: str = "sampler_args") -> "Sampler":
        """A copy with fields replaced; `where` prefixes error messages (a config key path)."""
        from two4two.distributions import parse_distribution

        allowed = self.field_names()
        changes = {}
        for key, raw in overrides.items():
            path = f"{where}.{key}"
            if key not in allowed:
                raise ConfigError(f"{path}: unknown sampler field; allowed: {', '.join(allowed)}")
            if key in self.method_drawn:
                raise ConfigError(
                    f"{path}: {type(self).__name__} computes {key} from other attributes; "
                    f"set {self.method_drawn[key]} instead, or use another sampler"
                )
            if key in SAMPLED_ATTRIBUTES:
                changes[key] = parse_distribution(raw, path, attribute=key)
            else:
                changes[key] = _coerce_setting(getattr(self, key), raw, path)
        try:
            return dataclasses.replace(self, **changes)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _coerce_setting(default: Any, raw: Any, path: str) -> Any:
    """Check a plain (non-distribution) sampler field against the type of its default."""
    if isinstance(default, tuple):
        if not isinstance(raw, list) or len(raw) != len(default) or any(type(v) is not type(d) for v, d in zip(raw, default)):
            raise ConfigError(f"{path}: expected a list like {list(default)!r}, got {raw!r}")
        return tuple(raw)
    if isinstance(default, bool) or isinstance(default, str):
        if type(raw) is not type(default):
            raise ConfigError(f"{path}: expected a {type(default).__name__}, got {raw!r}")
        return raw
    if isinstance(default, (int, float)):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {raw!r}")
        if raw != raw:
            raise ConfigError(f"{path}: NaN is not allowed")
        return type(default)(raw) if isinstance(default, float) else raw
    raise ConfigError(f"{path}: this field cannot be set from a config")


# ---- the catalogue -----------------------------------------------------------

REGISTRY = {
    "unbiased": "samplers.unbiased:UnbiasedSampler",
    "color_bias": "samplers.color_bias:ColorBiasSampler",
    "high_variation": "samplers.high_variation:HighVariationSampler",
    "study2022": "samplers.study2022:StudySampler",
}


def resolve_sampler(name: str) -> type[Sampler]:
    """A sampler class from a short registered name or a 'module:Class' path."""
    if not isinstance(name, str):
        raise ConfigError(f"sampler: expected a name or 'module:Class', got {name!r}")
    target = REGISTRY.get(name, name)
    if ":" not in target:
        raise ConfigError(
            f"sampler: {name!r} is neither a registered sampler ({', '.join(REGISTRY)}) nor 'module:Class'"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"sampler: cannot import module {module_name!r} ({exc})") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Sampler)):
        raise ConfigError(f"sampler: {target!r} is not a two4two Sampler class")
    return cls


__all__ = [
    "FIELD_NAMES",
    "REGISTRY",
    "Sampler",
    "SceneBatch",
    "attribute_columns",
    "draw",
    "redraw_where",
    "resolve_sampler",
    "truncnorm",
    "uniform",
]
