"""No bias: only the legs' position depends on the class.

Every other attribute is drawn independently of the label and of each other, which is
what an observer network (reading attributes back from images) must be trained on.
"""

from dataclasses import dataclass

from two4two.sampling import Sampler


@dataclass
class UnbiasedSampler(Sampler):
    """The engine's defaults: study ranges, colour and shape uniform on [0, 1]."""
