"""A simple colour bias: Stretchies tend to be red, Peekies blue, at every legs' position.

Written only with per-class distributions (no dependency methods), as the smallest
example of a biased scenario.
"""

from dataclasses import dataclass, field
from typing import Any

from two4two.sampling import Sampler, truncnorm


@dataclass
class ColorBiasSampler(Sampler):
    obj_color: Any = field(
        default_factory=lambda: {
            "peaky": truncnorm(0.3, 0.2, 0.0, 1.0),
            "stretchy": truncnorm(0.7, 0.2, 0.0, 1.0),
        }
    )
