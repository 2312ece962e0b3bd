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

    primitives.py     distribution specs and drawing (truncnorm, uniform, draw, redraw_where)
    distributions.py  distributions written in configs, parsed and checked against the ranges
    batch.py          SceneBatch: many parameter sets as columns
    sampler.py        Sampler (the named scenarios are the `samplers` package's)
"""

from two4two.sampling.batch import SceneBatch, attribute_columns
from two4two.sampling.primitives import draw, redraw_where, truncnorm, uniform
from two4two.sampling.sampler import Sampler

__all__ = [
    "Sampler",
    "SceneBatch",
    "attribute_columns",
    "draw",
    "redraw_where",
    "truncnorm",
    "uniform",
]
