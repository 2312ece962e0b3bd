"""SceneParameters: the contract between a sampler and the renderer.

One plain dataclass per image. Every value is validated on construction so a bad
value is caught where it was made, with an error that names the attribute, the value
and what is allowed. Nothing is coerced: an int where a bool is expected, a string
where a float is expected, NaN or an unknown key are all rejected.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from two4two.colors import check_colormap, scalar_to_rgb
from two4two.errors import ParameterError
from two4two.io import atomic_write

CLASS_NAMES = ("peaky", "stretchy")


@dataclass(frozen=True)
class Attribute:
    """One attribute a sampler draws: its values, its plain-language name, how two values differ.

    Every module that names, ranges, labels or compares attributes reads `ATTRIBUTES`,
    so a table, a plot and a study question cannot disagree about what an attribute is.
    """

    name: str
    label: str  # as tables and figures print it
    kind: str  # "class", "continuous" or "boolean"
    range: tuple[float, float] | None = None  # continuous: allowed values, both ends inclusive
    circular: bool = False  # an angle: a difference is the signed turn in (−π, π]

    def delta(self, new, old):
        """new − old (arrays or numbers); for a circular attribute the signed angle from old to new."""
        import numpy as np

        if self.circular:
            return np.pi - np.mod(np.pi - (np.asarray(new) - np.asarray(old)), 2 * np.pi)
        return np.asarray(new) - np.asarray(old)


_PI = math.pi
# In drawing order: a sampler draws them in this order, so it fixes every seeded dataset.
ATTRIBUTES: dict[str, Attribute] = {a.name: a for a in (
    Attribute("obj_name", "class", "class"),
    Attribute("arm_position", "legs' position", "continuous", (0.0, 1.0)),
    Attribute("obj_color", "colour", "continuous", (0.0, 1.0)),
    Attribute("bg_color", "background", "continuous", (0.0, 1.0)),
    Attribute("spherical", "shape", "continuous", (0.0, 1.0)),
    Attribute("bending", "bending", "continuous", (-_PI / 8, _PI / 8)),
    Attribute("obj_rotation_roll", "rotation roll", "continuous", (-_PI / 3, _PI / 3)),
    Attribute("obj_rotation_pitch", "rotation pitch", "continuous", (-_PI / 3, _PI / 3)),
    # "full circle": one turn either way, so both the [0, 2π) and (-π, π] conventions fit.
    Attribute("obj_rotation_yaw", "rotation yaw", "continuous", (-2 * _PI, 2 * _PI), circular=True),
    Attribute("position_x", "position x", "continuous", (-3.0, 3.0)),
    Attribute("position_y", "position y", "continuous", (-3.0, 3.0)),
    Attribute("fliplr", "mirrored", "boolean"),
    Attribute("labeling_error", "label error", "boolean"),
)}
# The ten attributes the paper measures by intervention (and the observer reads), in its tables' order.
MEASURED_ATTRIBUTES = ("arm_position", "obj_color", "spherical", "bg_color", "bending", "obj_rotation_roll",
                       "obj_rotation_pitch", "obj_rotation_yaw", "position_x", "position_y")

# Views of the registry that validation and the samplers use.
CONTINUOUS_RANGES: dict[str, tuple[float, float]] = {a.name: a.range for a in ATTRIBUTES.values() if a.kind == "continuous"}
BOOLEAN_ATTRIBUTES = tuple(a.name for a in ATTRIBUTES.values() if a.kind == "boolean")
# The attributes a sampler draws and an intervention may change, in drawing order.
SAMPLED_ATTRIBUTES = tuple(ATTRIBUTES)

MAX_RESOLUTION = 8192


def _range_text(name: str) -> str:
    low, high = CONTINUOUS_RANGES[name]
    return f"[{low:.6g}, {high:.6g}]"


def check_value(name: str, value: Any) -> None:
    """Raise ParameterError unless `value` is valid for attribute `name`."""
    if name in CONTINUOUS_RANGES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(
                f"{name}: expected a number in {_range_text(name)}, got {value!r} "
                f"({type(value).__name__})"
            )
        if math.isnan(value):
            raise ParameterError(f"{name}: NaN is not allowed; expected a number in {_range_text(name)}")
        low, high = CONTINUOUS_RANGES[name]
        if not low <= value <= high:
            raise ParameterError(f"{name}: {value!r} is outside the allowed range {_range_text(name)}")
    elif name in BOOLEAN_ATTRIBUTES:
        if not isinstance(value, bool):
            raise ParameterError(f"{name}: expected true or false, got {value!r} ({type(value).__name__})")
    elif name == "obj_name":
        if value not in CLASS_NAMES:
            raise ParameterError(f"obj_name: {value!r} is not a class; allowed: {', '.join(CLASS_NAMES)}")
    elif name == "resolution":
        ok = (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and all(1 <= v <= MAX_RESOLUTION for v in value)
        )
        if not ok:
            raise ParameterError(
                f"resolution: expected [width, height], two integers in [1, {MAX_RESOLUTION}], got {value!r}"
            )
    elif name == "colormap":
        check_colormap(value)
    elif name == "colormap_upper_scale":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ParameterError(f"colormap_upper_scale: expected a number in (0, 1], got {value!r}")
    elif name == "id":
        if not isinstance(value, str) or not value:
            raise ParameterError(f"id: expected a non-empty string, got {value!r}")
    elif name == "original_id":
        if value is not None and (not isinstance(value, str) or not value):
            raise ParameterError(f"original_id: expected null or a non-empty string, got {value!r}")
    elif name == "hidden_blocks":
        from two4two.animal import BLOCK_NAMES

        ok = isinstance(value, (tuple, list)) and all(isinstance(v, str) and v in BLOCK_NAMES for v in value)
        if not ok or len(set(value)) != len(value):
            raise ParameterError(
                f"hidden_blocks: expected a list of distinct block names from {', '.join(BLOCK_NAMES)}, got {value!r}"
            )
    elif name == "changed_attributes":
        if not isinstance(value, (tuple, list)) or any(v not in SAMPLED_ATTRIBUTES for v in value):
            raise ParameterError(
                f"changed_attributes: expected a list of attribute names from "
                f"{', '.join(SAMPLED_ATTRIBUTES)}, got {value!r}"
            )
    else:
        raise ParameterError(f"{name!r} is not a scene parameter; allowed: {', '.join(FIELD_NAMES)}")


@dataclass
class SceneParameters:
    """Everything needed to render one image, plus where it came from.

    `original_id` and `changed_attributes` are set on interventions: the sample this
    one was derived from and which attributes differ from it.
    """

    id: str
    obj_name: str = "peaky"
    arm_position: float = 0.5
    obj_color: float = 0.5
    bg_color: float = 0.5
    spherical: float = 0.5
    bending: float = 0.0
    obj_rotation_roll: float = 0.0
    obj_rotation_pitch: float = 0.0
    obj_rotation_yaw: float = 0.0
    position_x: float = 0.0
    position_y: float = 0.0
    fliplr: bool = False
    labeling_error: bool = False
    resolution: tuple[int, int] = (128, 128)
    colormap: str = "coolwarm"
    # Colour scalars above 0.5 are mapped as 0.5 + scale·(v − 0.5) before the colormap
    # (the 2022 study used 0.9 so the red end does not saturate).
    colormap_upper_scale: float = 1.0
    original_id: str | None = None
    changed_attributes: tuple[str, ...] = field(default_factory=tuple)
    # Part removal: these blocks (two4two.animal.BLOCK_NAMES) are not rendered, and the mask
    # has no pixel of them. Empty for every ordinary image, and then left out of to_dict, so the
    # parameter lines of datasets written before this field existed stay what they were.
    hidden_blocks: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for f in SEQUENCE_FIELDS:
            if isinstance(getattr(self, f), list):
                setattr(self, f, tuple(getattr(self, f)))
        for f in FIELD_NAMES:
            check_value(f, getattr(self, f))

    @property
    def label(self) -> int:
        """Class index as stored: 0 peaky, 1 stretchy, flipped when labeling_error is set."""
        return int(self.obj_name == "stretchy") ^ int(self.labeling_error)

    @property
    def true_label(self) -> int:
        return int(self.obj_name == "stretchy")

    def obj_color_rgb(self) -> tuple[float, float, float]:
        return scalar_to_rgb(self.obj_color, self.colormap, self.colormap_upper_scale)

    def bg_color_rgb(self) -> tuple[float, float, float]:
        """The background's colour: not rescaled by colormap_upper_scale (the original's study sampler)."""
        return scalar_to_rgb(self.bg_color, self.colormap)

    def stand_in_rgb(self) -> tuple[float, float, float]:
        """The colour bounce light sees instead of the background's or the animal's: the colormap's middle."""
        return scalar_to_rgb(0.5, self.colormap)

    def to_dict(self) -> dict[str, Any]:
        d = {f: list(getattr(self, f)) if f in SEQUENCE_FIELDS else getattr(self, f) for f in FIELD_NAMES}
        if not self.hidden_blocks:
            del d["hidden_blocks"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SceneParameters":
        if not isinstance(data, dict):
            raise ParameterError(f"expected a JSON object of scene parameters, got {type(data).__name__}")
        unknown = [k for k in data if k not in FIELD_NAMES]
        if unknown:
            raise ParameterError(
                f"{unknown[0]!r} is not a scene parameter; allowed: {', '.join(FIELD_NAMES)}"
            )
        if "id" not in data:
            raise ParameterError("id: missing; every parameter set needs an id")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    def replace(self, **changes: Any) -> "SceneParameters":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(SceneParameters))
SEQUENCE_FIELDS = ("resolution", "changed_attributes", "hidden_blocks")  # tuples here, lists in JSON
# A dataset's parameters.jsonl adds the checksums of each sample's files under this key; a
# parameters file reader skips it, so a dataset's lines can be rendered again as they are.
CHECKSUMS_KEY = "sha256"


def iter_jsonl(path: str | os.PathLike) -> Iterator[SceneParameters]:
    """Read SceneParameters from a JSON Lines file, naming the line of any error."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{path}: no such parameters file")
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if isinstance(data, dict):
                    data.pop(CHECKSUMS_KEY, None)
                yield SceneParameters.from_dict(data)
            except json.JSONDecodeError as exc:
                raise ParameterError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            except ParameterError as exc:
                raise ParameterError(f"{path}:{lineno}: {exc}") from None


def read_jsonl(path: str | os.PathLike) -> list[SceneParameters]:
    return list(iter_jsonl(path))


def write_jsonl(path: str | os.PathLike, params: Iterable[SceneParameters]) -> int:
    """Write parameters atomically (temp file, then rename): a reader never sees half a file."""
    count = 0

    def write(fh) -> None:
        nonlocal count
        for p in params:
            fh.write(p.to_json().encode("utf-8") + b"\n")
            count += 1

    atomic_write(path, write)
    return count
