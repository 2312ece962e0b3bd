"""Colour scalars to RGB through a matplotlib colormap (0 = blue, 1 = red for coolwarm)."""

from __future__ import annotations

from functools import lru_cache

from two4two.errors import ParameterError


@lru_cache(maxsize=None)
def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def check_colormap(name: object) -> None:
    import matplotlib

    if not isinstance(name, str) or name not in matplotlib.colormaps:
        raise ParameterError(
            f"colormap: {name!r} is not a matplotlib colormap; e.g. coolwarm, viridis, RdBu"
        )


def rescale_upper(value: float, upper_scale: float) -> float:
    """Compress the upper half: v > 0.5 becomes 0.5 + upper_scale·(v − 0.5)."""
    return value if value <= 0.5 else 0.5 + upper_scale * (value - 0.5)


def scalar_to_rgb(value: float, colormap: str = "coolwarm", upper_scale: float = 1.0) -> tuple[float, float, float]:
    """sRGB triple in [0, 1] for a colour scalar in [0, 1]."""
    r, g, b, _ = _colormap(colormap)(rescale_upper(float(value), upper_scale))
    return (float(r), float(g), float(b))
