"""Reading configs, manifests and bundles key by key, with one error format for all of them.

    fields = Fields(raw, "configs/x.yaml", allowed=("seed", "splits"), required=("seed",))
    seed = fields.integer("seed", low=0)

Every error is of the class the reader was given (ConfigError by default) and reads

    SOURCE: KEY.PATH: expected WHAT IS ALLOWED, got VALUE
    SOURCE: KEY.PATH: unknown key; allowed: A, B, C
    SOURCE: KEY.PATH: missing; required: A, B
"""

from __future__ import annotations

import json
import math
from dataclasses import field
from typing import Any, Callable, Sequence

from two4two.errors import ConfigError, shown

_MISSING = object()


def shown_value(value: Any) -> str:
    """A value as an error quotes it: short, and as the file wrote it."""
    if isinstance(value, str):
        return repr(value[:80])
    try:
        return json.dumps(value)[:80]
    except (TypeError, ValueError):
        return repr(value)[:80]


class Fields:
    """One mapping read key by key; `where` is its key path inside `source` ('' at the top)."""

    def __init__(self, raw: Any, source: str, where: str = "", *, allowed: Sequence[str] | None = None,
                 required: Sequence[str] = (), error: type[Exception] = ConfigError, what: str = "a mapping"):
        self.source, self.where, self.error_type = source, where, error
        if not isinstance(raw, dict):
            raise self.error(where, raw, what)
        if allowed is not None:
            names = list(dict.fromkeys([*required, *allowed]))
            for key in raw:
                if key not in names:
                    raise self.error_type(f"{self._at(self.path(key))}unknown key; allowed: {', '.join(map(str, names))}")
        for key in required:
            if key not in raw:
                raise self.error_type(f"{self._at(self.path(key))}missing; required: {', '.join(required)}")
        self.raw = raw

    # ---- paths and errors

    def path(self, key: Any) -> str:
        key = shown(key)  # a key with a line break or odd characters as its repr: the error stays one line
        return f"{self.where}.{key}" if self.where else key

    def _at(self, path: str) -> str:
        return ": ".join(part for part in (self.source, path) if part) + ": "

    def error(self, path: str, value: Any, expected: str) -> Exception:
        return self.error_type(f"{self._at(path)}expected {expected}, got {shown_value(value)}")

    def fail(self, key: Any, expected: str) -> Exception:
        """The error for this key's value."""
        return self.error(self.path(key), self.raw.get(key), expected)

    def check(self, condition: bool, key: Any, expected: str) -> None:
        if not condition:
            raise self.fail(key, expected)

    # ---- typed reads (a default is returned when the key is absent)

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def _read(self, key: str, default: Any, ok: Callable[[Any], bool], expected: str, low=None, high=None) -> Any:
        """The value at `key` (`default` when absent; missing without one), unless `ok` refuses it
        or it lies outside [low, high] where given."""
        value = self.raw.get(key, default)
        if value is _MISSING:
            raise self.error_type(f"{self._at(self.path(key))}missing")
        if not ok(value) or (low is not None and value < low) or (high is not None and value > high):
            raise self.error(self.path(key), value, expected)
        return value

    def text(self, key: str, default: Any = _MISSING, empty: bool = False) -> str:
        return self._read(key, default, lambda v: isinstance(v, str) and (empty or bool(v.strip())),
                          "text" if empty else "a non-empty string")

    def integer(self, key: str, default: Any = _MISSING, low: int | None = None, high: int | None = None,
                expected: str | None = None) -> int:
        return self._read(key, default, lambda v: isinstance(v, int) and not isinstance(v, bool),
                          expected or _range("an integer", low, high), low, high)

    def number(self, key: str, default: Any = _MISSING, low: float | None = None, high: float | None = None,
               expected: str | None = None) -> float:
        return float(self._read(key, default, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                                and math.isfinite(v), expected or _range("a number", low, high), low, high))

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        return self._read(key, default, lambda v: isinstance(v, bool), "true or false")

    def choice(self, key: str, choices: Sequence[Any], default: Any = _MISSING) -> Any:
        def ok(v) -> bool:
            return v in choices and (not isinstance(v, bool) or any(isinstance(c, bool) for c in choices))

        return self._read(key, default, ok, f"one of {', '.join(map(str, choices))}")

    def items(self, key: str, default: Any = _MISSING, nonempty: bool = False) -> list:
        return self._read(key, default, lambda v: isinstance(v, list) and (bool(v) or not nonempty),
                          "a non-empty list" if nonempty else "a list")

    def setting(self, spec) -> Any:
        """The value of a dataclass field declared with `setting()`: its declared type and rule."""
        rule, kind, key = spec.metadata, spec.type, spec.name
        if kind == "bool":
            return self.boolean(key)
        if "choices" in rule:
            return self.choice(key, rule["choices"])
        if kind == "str":
            return self.text(key)
        read = self.integer if kind == "int" else self.number
        value = read(key, low=rule.get("low"), high=rule.get("high"), expected=rule.get("expected"))
        if "check" in rule:
            self.check(rule["check"](value), key, rule["expected"])
        return value

    def mapping(self, key: str, *, allowed: Sequence[str] | None = None, required: Sequence[str] = (),
                what: str = "a mapping") -> "Fields":
        """The nested mapping at `key` (absent or null: an empty one), read the same way."""
        value = self.raw.get(key)
        return Fields({} if value is None else value, self.source, self.path(key), allowed=allowed,
                      required=required, error=self.error_type, what=what)


def setting(default: Any, help: str = "", **rule) -> Any:
    """A dataclass field declared once: its default, what it allows (`low`/`high`, `choices`, or a
    `check` with its `expected` text) and its help; configs read it with `Fields.setting`, and
    the command line derives its options from it."""
    return field(default=default, metadata={"help": help, **rule})


def _range(kind: str, low, high) -> str:
    if low is not None and high is not None:
        return f"{kind} in [{low}, {high}]"
    if low == 0:
        return f"a non-negative {kind.split()[-1]}"
    if low is not None:
        return f"{kind} ≥ {low}"
    return f"{kind} ≤ {high}" if high is not None else kind
