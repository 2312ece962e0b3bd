"""Dataset configs: YAML → a validated `DatasetConfig`.

    name: quickstart
    sampler: study2022                 # registered name or 'module:Class'
    sampler_args: {bg_color: {uniform: [0.1, 0.9]}}   # optional field overrides
    seed: 0
    resolution: [64, 64]
    output_dir: data/quickstart
    splits:
      train: {n: 300}
      test:
        n: 50
        interventions: [arm_position, obj_color]   # one extra split per attribute
        sampler_args: {labeling_error: false}       # optional, this split only

Everything is checked on load; errors name the file and the key path.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from two4two.errors import ConfigError, ParameterError, shown
from two4two.layout import INTERVENTION_SEPARATOR, REMOVAL_SEPARATOR, intervention_split, is_derived_split
from two4two.parameters import SAMPLED_ATTRIBUTES
from samplers import resolve_sampler
from two4two.sampling import Sampler, SceneBatch

TOP_KEYS = ("kind", "name", "sampler", "sampler_args", "seed", "resolution", "output_dir", "splits", "render")
RENDER_KEYS = ("samples", "denoise", "subdivision_levels", "look", "pixel_filter_width")
SPLIT_KEYS = ("n", "interventions", "sampler_args")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (a silent typo source in hand-written YAML)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def split_seed(seed: int, *names: str) -> np.random.SeedSequence:
    """A seed stream per split (and per intervention), stable across runs and machines."""
    return np.random.SeedSequence([seed, *(zlib.crc32(n.encode()) for n in names)])


@dataclass
class SplitConfig:
    name: str
    n: int
    interventions: tuple[str, ...] = ()
    sampler_args: dict[str, Any] = field(default_factory=dict)

    def intervention_split_names(self) -> list[str]:
        return [intervention_split(self.name, a) for a in self.interventions]


@dataclass
class DatasetConfig:
    name: str
    sampler: str
    seed: int
    output_dir: Path
    splits: dict[str, SplitConfig]
    sampler_args: dict[str, Any] = field(default_factory=dict)
    resolution: tuple[int, int] | None = None
    render: dict[str, Any] = field(default_factory=dict)
    source: str = "<config>"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def make_sampler(self, split: str | None = None) -> Sampler:
        """The configured sampler, with the split's own overrides when given."""
        sampler = resolve_sampler(self.sampler)().with_overrides(self.sampler_args, "sampler_args")
        if self.resolution is not None:
            sampler = sampler.with_overrides({"resolution": list(self.resolution)}, "resolution")
        if split is not None:
            sampler = sampler.with_overrides(self.split(split).sampler_args, f"splits.{split}.sampler_args")
        return sampler

    def render_settings(self):
        from two4two.render import RenderSettings

        return RenderSettings(**self.render)

    def split(self, name: str) -> SplitConfig:
        if name not in self.splits:
            raise ConfigError(f"{self.source}: no split {name!r}; the config has {', '.join(self.splits)}")
        return self.splits[name]

    def sample_split(self, split: str, n: int | None = None, seed: int | None = None) -> SceneBatch:
        """The parameters of a split; same config and seed → same parameters."""
        count = self.split(split).n if n is None else n
        return self.make_sampler(split).sample(count, split_seed(self.seed if seed is None else seed, split))

    def sample_intervention(self, split: str, attribute: str, originals: SceneBatch) -> SceneBatch:
        """`originals` with `attribute` redrawn by interventional sampling (seeded per attribute)."""
        return self.make_sampler(split).intervene(
            originals, attribute, rng=split_seed(self.seed, split, attribute)
        )


def _expect(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {message}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_config(raw: Any, source: str = "<config>") -> DatasetConfig:
    """Validate a loaded YAML mapping; every error names `source` and the key path."""
    _expect(isinstance(raw, dict), source, f"expected a mapping at the top level, got {type(raw).__name__}")
    for key in raw:
        _expect(key in TOP_KEYS, f"{source}: {shown(key)}", f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    for key in ("sampler", "seed", "splits"):
        _expect(key in raw, f"{source}: {key}", "missing")
    kind = raw.get("kind", "dataset")
    _expect(kind == "dataset", f"{source}: kind", f"expected 'dataset', got {kind!r}")
    name = raw.get("name", Path(source).stem)
    _expect(isinstance(name, str) and name, f"{source}: name", f"expected a non-empty string, got {name!r}")
    seed = raw["seed"]
    _expect(_is_int(seed) and seed >= 0, f"{source}: seed", f"expected a non-negative integer, got {seed!r}")
    resolution = raw.get("resolution")
    if resolution is not None:
        ok = isinstance(resolution, list) and len(resolution) == 2 and all(_is_int(v) and 1 <= v <= 8192 for v in resolution)
        _expect(ok, f"{source}: resolution", f"expected [width, height] with integers in [1, 8192], got {resolution!r}")
        resolution = tuple(resolution)
    sampler_args = raw.get("sampler_args") or {}
    _expect(isinstance(sampler_args, dict), f"{source}: sampler_args", "expected a mapping of sampler fields")
    output_dir = raw.get("output_dir", f"data/{name}")
    _expect(isinstance(output_dir, str) and output_dir, f"{source}: output_dir", f"expected a path, got {output_dir!r}")

    render = raw.get("render") or {}
    _expect(isinstance(render, dict), f"{source}: render", "expected a mapping")
    for key, value in render.items():
        where = f"{source}: render.{shown(key)}"
        _expect(key in RENDER_KEYS, where, f"unknown key; allowed: {', '.join(RENDER_KEYS)}")
        if key == "denoise":
            _expect(isinstance(value, bool), where, f"expected true or false, got {value!r}")
        elif key == "samples":
            _expect(_is_int(value) and 1 <= value <= 65536, where, f"expected an integer in [1, 65536], got {value!r}")
        elif key == "look":
            from two4two.render import LOOKS

            _expect(value in LOOKS, where, f"expected one of {', '.join(LOOKS)}, got {value!r}")
        elif key == "pixel_filter_width":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.01 <= value <= 10
            _expect(ok, where, f"expected a number of px in [0.01, 10], got {value!r}")
        else:
            _expect(_is_int(value) and 0 <= value <= 6, where, f"expected an integer in [0, 6], got {value!r}")

    splits_raw = raw["splits"]
    _expect(isinstance(splits_raw, dict) and splits_raw, f"{source}: splits", "expected a mapping of split name to {n: ...}")
    splits = {}
    for split_name, spec in splits_raw.items():
        where = f"{source}: splits.{shown(split_name)}"
        _expect(
            isinstance(split_name, str) and split_name.isidentifier() and not is_derived_split(split_name),
            where,
            f"split names must be identifiers (letters, digits, _) without {INTERVENTION_SEPARATOR!r} or {REMOVAL_SEPARATOR!r}",
        )
        _expect(isinstance(spec, dict), where, "expected a mapping with at least n")
        for key in spec:
            _expect(key in SPLIT_KEYS, f"{where}.{shown(key)}", f"unknown key; allowed: {', '.join(SPLIT_KEYS)}")
        n = spec.get("n")
        _expect(_is_int(n) and n >= 0, f"{where}.n", f"expected a non-negative integer, got {n!r}")
        interventions = spec.get("interventions") or []
        _expect(isinstance(interventions, list), f"{where}.interventions", "expected a list of attribute names")
        for i, attr in enumerate(interventions):
            _expect(
                attr in SAMPLED_ATTRIBUTES,
                f"{where}.interventions[{i}]",
                f"{attr!r} is not an attribute; allowed: {', '.join(SAMPLED_ATTRIBUTES)}",
            )
        _expect(len(set(interventions)) == len(interventions), f"{where}.interventions", "lists an attribute twice")
        split_args = spec.get("sampler_args") or {}
        _expect(isinstance(split_args, dict), f"{where}.sampler_args", "expected a mapping of sampler fields")
        splits[split_name] = SplitConfig(split_name, n, tuple(interventions), split_args)

    config = DatasetConfig(
        name=name,
        sampler=raw["sampler"],
        seed=seed,
        output_dir=Path(output_dir),
        splits=splits,
        sampler_args=sampler_args,
        resolution=resolution,
        render=render,
        source=source,
        raw=raw,
    )
    # Build every split's sampler and draw a few samples now, so that a bad field or a
    # custom draw producing out-of-range values fails on load with its key path.
    for split_name in splits:
        try:
            config.make_sampler(split_name).sample(64, 0)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except ParameterError as exc:
            raise ConfigError(f"{source}: splits.{split_name}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{source}: splits.{split_name}: the sampler fails ({exc})") from None
    return config


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """A YAML (or JSON) file, with duplicate keys and syntax errors reported as ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_config(path: str | Path) -> DatasetConfig:
    return parse_config(read_yaml(path), str(path))
