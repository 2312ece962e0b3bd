"""Sampler: a dataclass whose fields are attribute distributions, and the registry of named ones."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from two4two.errors import ConfigError, ParameterError
from two4two.parameters import SAMPLED_ATTRIBUTES, SceneParameters, check_value
from two4two.sampling.batch import SceneBatch, _random_ids, _settings
from two4two.sampling.distributions import parse_distribution
from two4two.sampling.primitives import RngLike, as_rng, draw, truncnorm, uniform


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
    # Part removal: blocks left out of every image (names from two4two.animal.BLOCK_NAMES).
    hidden_blocks: tuple[str, ...] = ()
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
        return SceneBatch(cols, **_settings(self)).validate()

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
        columns = {**batch.columns, attribute: new_values, "id": _random_ids(rng, n)}
        out = dataclasses.replace(batch, columns=columns, original_id=np.asarray(batch.columns["id"], dtype=object),
                                  changed_attributes=(attribute,)).validate()
        return out[0] if single else out

    # ---- construction from configs --------------------------------------------

    def with_overrides(self, overrides: dict[str, Any], where: str = "sampler_args") -> "Sampler":
        """A copy with fields replaced; `where` prefixes error messages (a config key path)."""
        allowed = tuple(f.name for f in dataclasses.fields(self))
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
            elif key == "hidden_blocks":
                try:
                    check_value(key, raw)
                except ParameterError as exc:
                    raise ConfigError(f"{where}.{exc}") from None
                changes[key] = tuple(raw)
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
