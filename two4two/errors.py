"""User-facing errors: the CLI prints these as one line and exits non-zero (no traceback)."""


class Two4TwoError(Exception):
    """Base class for errors caused by input the user can fix."""


class ParameterError(Two4TwoError, ValueError):
    """A scene parameter has a wrong type, is out of range, or is unknown."""


class ConfigError(Two4TwoError, ValueError):
    """A config file has an unknown key, a bad value, or a bad structure."""


class ResponsesError(Two4TwoError, ValueError):
    """A study responses file is malformed: a missing column, a bad value, a duplicate or missing answer."""


class BundleError(Two4TwoError, ValueError):
    """A study bundle is malformed: a missing or unknown manifest field, a bad value, an image not in the bundle."""


class StorageError(Two4TwoError):
    """A study responses database cannot be used: another bundle's, or not one of ours."""


class CheckpointError(Two4TwoError):
    """A checkpoint cannot be used: missing, truncated, not ours, of another kind, or holding more than tensors and plain data."""


def shown(key) -> str:
    """A key as a message shows it: plain when it is printable text, else its repr (an error stays one line)."""
    return key if isinstance(key, str) and key.isprintable() and key.strip() == key and key else repr(key)
