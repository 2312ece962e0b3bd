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
      # train: {n: 300, part_removal: {rate: 0.3}}  # a third of the images without one block (parts: which)

Everything is checked on load; errors name the file and the key path.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from samplers import resolve_sampler
from two4two.animal import BLOCK_NAMES, PARTS
from two4two.errors import ConfigError, ParameterError
from two4two.layout import INTERVENTION_SEPARATOR, REMOVAL_SEPARATOR, intervention_split, is_derived_split
from two4two.parameters import SAMPLED_ATTRIBUTES, SceneParameters
from two4two.render import RenderSettings
from two4two.schema import Fields
from two4two.sampling import Sampler, SceneBatch

TOP_KEYS = ("kind", "name", "sampler", "sampler_args", "seed", "resolution", "output_dir", "splits", "render")
SPLIT_KEYS = ("n", "interventions", "sampler_args", "part_removal")


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


@dataclass(frozen=True)
class PartRemoval:
    """In-domain part removal (Hesse et al. 2023, FunnyBirds): each image of the split is rendered,
    with probability `rate`, without one part drawn uniformly from `parts` (blocks or block groups of
    two4two.animal.PARTS), so a model trained on it has seen images like those part deletion shows it."""

    rate: float
    parts: tuple[str, ...] = BLOCK_NAMES

    def apply(self, params: list[SceneParameters], seed: np.random.SeedSequence) -> list[SceneParameters]:
        """`params` with the drawn parts hidden; the same seed and length hide the same parts at the
        same places (an intervention split keeps its original's removal)."""
        rng = np.random.default_rng(seed)
        hit, which = rng.random(len(params)) < self.rate, rng.integers(0, len(self.parts), len(params))
        return [p.replace(hidden_blocks=tuple(dict.fromkeys((*p.hidden_blocks, *PARTS[self.parts[w]])))) if h else p
                for p, h, w in zip(params, hit, which)]


@dataclass
class SplitConfig:
    name: str
    n: int
    interventions: tuple[str, ...] = ()
    sampler_args: dict[str, Any] = field(default_factory=dict)
    part_removal: PartRemoval | None = None

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
        return RenderSettings(**self.render)

    def split(self, name: str) -> SplitConfig:
        if name not in self.splits:
            raise ConfigError(f"{self.source}: no split {name!r}; the config has {', '.join(self.splits)}")
        return self.splits[name]

    def sample_split(self, split: str, n: int | None = None, seed: int | None = None) -> SceneBatch:
        """The parameters of a split; same config and seed → same parameters."""
        count = self.split(split).n if n is None else n
        return self.make_sampler(split).sample(count, split_seed(self.seed if seed is None else seed, split))

    def remove_parts(self, split: str, params: list[SceneParameters]) -> list[SceneParameters]:
        """The split's images (or those of one of its intervention splits) after its part removal, if any."""
        removal = self.split(split).part_removal
        return removal.apply(params, split_seed(self.seed, split, "part_removal")) if removal else params

    def sample_intervention(self, split: str, attribute: str, originals: SceneBatch) -> SceneBatch:
        """`originals` with `attribute` redrawn by interventional sampling (seeded per attribute)."""
        return self.make_sampler(split).intervene(
            originals, attribute, rng=split_seed(self.seed, split, attribute)
        )


def parse_config(raw: Any, source: str = "<config>") -> DatasetConfig:
    """Validate a loaded YAML mapping; every error names `source` and the key path (two4two.schema)."""
    top = Fields(raw, source, allowed=TOP_KEYS, required=("sampler", "seed", "splits"), what="a mapping at the top level")
    top.choice("kind", ("dataset",), "dataset")
    name = top.text("name", Path(source).stem)
    seed = top.integer("seed", low=0)
    resolution = top.get("resolution")
    if resolution is not None:
        top.check(isinstance(resolution, list) and len(resolution) == 2
                  and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192 for v in resolution),
                  "resolution", "[width, height] with integers in [1, 8192]")
        resolution = tuple(resolution)
    sampler_args = top.mapping("sampler_args", what="a mapping of sampler fields").raw
    output_dir = top.text("output_dir", f"data/{name}")
    render = top.mapping("render")
    RenderSettings.read(render.raw, source)  # each setting checked as RenderSettings declares it

    splits_raw = top.mapping("splits", what="a mapping of split name to {n: ...}")
    top.check(bool(splits_raw.raw), "splits", "a mapping of split name to {n: ...}")
    splits = {}
    for split_name in splits_raw.raw:
        if not (isinstance(split_name, str) and split_name.isidentifier() and not is_derived_split(split_name)):
            raise splits_raw.error(splits_raw.path(split_name), split_name, "a split name: an identifier (letters, digits, _) "
                                   f"without {INTERVENTION_SEPARATOR!r} or {REMOVAL_SEPARATOR!r}")
        spec = splits_raw.mapping(split_name, allowed=SPLIT_KEYS, required=("n",), what="a mapping with at least n")
        n = spec.integer("n", low=0)
        interventions = spec.items("interventions", [])
        for i, attr in enumerate(interventions):
            if attr not in SAMPLED_ATTRIBUTES:
                raise spec.error(spec.path(f"interventions[{i}]"), attr, f"an attribute: one of {', '.join(SAMPLED_ATTRIBUTES)}")
        spec.check(len(set(interventions)) == len(interventions), "interventions", "each attribute once")
        split_args = spec.mapping("sampler_args", what="a mapping of sampler fields").raw
        removal = spec.mapping("part_removal", allowed=("rate", "parts"), what="a mapping {rate, parts}")
        part_removal = None
        if removal.raw:
            parts = removal.items("parts", list(BLOCK_NAMES), nonempty=True)
            for i, part in enumerate(parts):
                if part not in PARTS:
                    raise removal.error(removal.path(f"parts[{i}]"), part, f"a block or block group: one of {', '.join(PARTS)}")
            part_removal = PartRemoval(removal.number("rate", low=0.0, high=1.0), tuple(parts))
        splits[split_name] = SplitConfig(split_name, n, tuple(interventions), split_args, part_removal)

    config = DatasetConfig(
        name=name,
        sampler=raw["sampler"],
        seed=seed,
        output_dir=Path(output_dir),
        splits=splits,
        sampler_args=sampler_args,
        resolution=resolution,
        render=render.raw,
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


BUILTIN_CONFIGS = Path(__file__).parent / "configs"  # shipped in the wheel: `two4two render quickstart` needs no checkout


def builtin_configs() -> dict[str, Path]:
    """The configs shipped inside the package, by name (`two4two configs` lists them)."""
    return {p.stem: p for p in sorted(BUILTIN_CONFIGS.glob("*.yaml"))}


def config_file(ref: str | Path, what: str = "config file") -> Path:
    """The file a config is named by: `ref` itself when it is a file, else the built-in config of that
    name (`quickstart` or `quickstart.yaml`, without a folder). A path always wins over a built-in."""
    path = Path(ref)
    if path.is_file():
        return path
    builtins = builtin_configs()
    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if len(path.parts) == 1 and name in builtins:
        return builtins[name]
    raise ConfigError(f"{ref}: no such {what}, nor a built-in config (two4two configs): {', '.join(builtins)}")


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """A YAML (or JSON) file, or a built-in config by name, with duplicate keys and syntax errors
    reported as ConfigError naming the file."""
    path = config_file(path, what)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_config(path: str | Path) -> DatasetConfig:
    return parse_config(read_yaml(path), str(path))
