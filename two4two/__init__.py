"""two4two: synthetic Peeky/Stretchy images with biases of known strength."""

from two4two.errors import ConfigError, ParameterError, Two4TwoError
from two4two.parameters import SceneParameters, read_jsonl, write_jsonl

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ParameterError",
    "SceneParameters",
    "Two4TwoError",
    "read_jsonl",
    "write_jsonl",
    "__version__",
]
