"""High variation: every attribute spread over (nearly) its whole valid range.

For robustness checks and for training observers that must read attributes back from
unusual poses; no attribute but the legs' position depends on the class.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from two4two.sampling import Sampler, uniform


@dataclass
class HighVariationSampler(Sampler):
    bg_color: Any = field(default_factory=lambda: uniform(0.0, 1.0))
    bending: Any = field(default_factory=lambda: uniform(-np.pi / 8, np.pi / 8))
    obj_rotation_roll: Any = field(default_factory=lambda: uniform(-np.pi / 4, np.pi / 4))
    obj_rotation_pitch: Any = field(default_factory=lambda: uniform(-np.pi / 4, np.pi / 4))
    position_x: Any = field(default_factory=lambda: uniform(-1.0, 1.0))
    position_y: Any = field(default_factory=lambda: uniform(-1.0, 1.0))
