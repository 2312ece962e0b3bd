"""The dataset of the 2022 user study (Sixt et al., ICLR 2022; Table 5 and Figure 3).

* shape is biased but not predictive: cubes for clear Peekies, spheres for clear
  Stretchies, the base distribution inside the legs band [0.45, 0.55];
* colour is biased and predictive: where the legs are ambiguous a Stretchy is likely
  red and a Peeky blue, becoming uniform towards extreme legs' positions;
* everything else is independent of the label (the engine's defaults are Table 5).
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from two4two.errors import ConfigError
from two4two.sampling import Sampler, draw, redraw_where


@dataclass
class StudySampler(Sampler):
    # Base draw for the shape; must be symmetric about 0.5 for the bias to be non-predictive.
    spherical: Any = field(default_factory=lambda: stats.beta(0.3, 0.3))
    shape_band: tuple[float, float] = (0.45, 0.55)
    shape_uniform_probability: float = 0.33
    color_center_width: float = 0.25
    color_slope: float = 2.5
    color_uniform_probability: float = 0.15
    colormap_upper_scale: float = 0.9
    method_drawn: ClassVar[dict[str, str]] = {
        "obj_color": "color_center_width, color_slope and color_uniform_probability",
    }

    def __post_init__(self) -> None:
        for name in ("shape_uniform_probability", "color_uniform_probability", "color_center_width"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"{name}: expected a value in [0, 1], got {value!r}")
        if self.color_slope < 0:
            raise ConfigError(f"color_slope: expected a non-negative slope, got {self.color_slope!r}")
        low, high = self.shape_band
        if not 0 <= low <= high <= 1:
            raise ConfigError(f"shape_band: expected [low, high] with 0 <= low <= high <= 1, got {list(self.shape_band)}")

    def draw_spherical(self, rng: np.random.Generator, n: int, cols: dict) -> np.ndarray:
        arm = cols["arm_position"]
        low, high = self.shape_band

        def reject(values, index):
            # Cubes (<= 0.5) below the band, spheres (>= 0.5) above it.
            return ((arm[index] < low) & (values > 0.5)) | ((arm[index] > high) & (values < 0.5))

        values = redraw_where(draw(self.spherical, rng, n), reject, self.spherical, rng)
        fresh = rng.random(n) < self.shape_uniform_probability
        values[fresh] = draw(self.spherical, rng, int(fresh.sum()))
        return values

    def draw_obj_color(self, rng: np.random.Generator, n: int, cols: dict) -> np.ndarray:
        arm = cols["arm_position"]
        stretchy = cols["obj_name"] == "stretchy"
        # How far the colour may stray from its class's end: narrow where legs are ambiguous.
        distance = np.where(stretchy, arm - 0.5, 0.5 - arm)
        width = np.clip(self.color_center_width + self.color_slope * distance, 0.0, 1.0)
        offset = rng.uniform(0.0, 1.0, n) * width
        values = np.where(stretchy, 1.0 - offset, offset)
        fresh = rng.random(n) < self.color_uniform_probability
        values[fresh] = rng.uniform(0.0, 1.0, int(fresh.sum()))
        return values
