"""The catalogue of bias scenarios, one module per scenario, and the names configs call them by.

Configs name a sampler by a short name (REGISTRY) or as 'module:Class' (a scenario of one's
own, e.g. `my_samplers:TiltedSampler`). This package sits above `two4two.sampling`, whose
`Sampler` its scenarios subclass, and below `two4two.config`, which resolves names here: the
engine never imports its catalogue.
"""

from __future__ import annotations

import importlib

from samplers.color_bias import ColorBiasSampler
from samplers.high_variation import HighVariationSampler
from samplers.study2022 import StudySampler
from samplers.unbiased import UnbiasedSampler
from two4two.errors import ConfigError
from two4two.sampling import Sampler

REGISTRY: dict[str, type[Sampler]] = {
    "unbiased": UnbiasedSampler,
    "color_bias": ColorBiasSampler,
    "high_variation": HighVariationSampler,
    "study2022": StudySampler,
}


def resolve_sampler(name: str) -> type[Sampler]:
    """A sampler class from a short registered name or a 'module:Class' path."""
    if not isinstance(name, str):
        raise ConfigError(f"sampler: expected a name or 'module:Class', got {name!r}")
    if name in REGISTRY:
        return REGISTRY[name]
    if ":" not in name:
        raise ConfigError(f"sampler: {name!r} is neither a registered sampler ({', '.join(REGISTRY)}) nor 'module:Class'")
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"sampler: cannot import module {module_name!r} ({exc})") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Sampler)):
        raise ConfigError(f"sampler: {name!r} is not a two4two Sampler class")
    return cls
