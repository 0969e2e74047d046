"""Literal values against an option's declaration: kind, null, check. And the encoding of
categorical choices that Optuna cannot hold (lists, mappings) as strings.

Booleans are never numbers here (YAML `true` is not 1), integers are accepted for floats.
Every integer option holds a 32-bit value (sizes, counts, seeds: what torch, NumPy's seeds and
an SQL INTEGER all take); larger ones are refused here, not by a trial in C++.
"""
from __future__ import annotations

import json
import math
from typing import Any

from trainers.options import Option

from .errors import MISSING, suggest
from .yamlio import Locator, Path

INT_MAX = 2 ** 31 - 1
KIND_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false",
              "str": "a string", "floats": "a list of numbers", "ints": "a list of integers",
              "mapping": "a mapping"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def coerce_kind(kind: str, value: Any) -> Any:
    """The value normalised to its kind (ints become floats for float options), or MISSING
    when it is not of that kind."""
    if kind == "float":
        return float(value) if _number(value) and math.isfinite(value) else MISSING
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else MISSING
    if kind == "bool":
        return value if isinstance(value, bool) else MISSING
    if kind == "str":
        return value if isinstance(value, str) else MISSING
    if kind in ("floats", "ints"):
        if not isinstance(value, (list, tuple)):
            return MISSING
        items = [coerce_kind(kind[:-1], x) for x in value]
        return MISSING if any(x is MISSING for x in items) else items
    if kind == "mapping":
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        return dict(value) if ok else MISSING
    raise ValueError(f"unknown kind {kind!r}")  # pragma: no cover - Option checks its kind


def check_literal(option: Option, value: Any, loc: Locator, path: Path) -> Any:
    """`value` checked against `option`; returns the normalised value or raises SpaceError."""
    if value is None:
        if option.nullable:
            return None
        rule = "is required" if option.required else "must not be null"
        raise loc.error(path, f"{rule} ({KIND_WORDS[option.kind]})", value)
    v = coerce_kind(option.kind, value)
    if v is MISSING:
        raise loc.error(path, f"must be {KIND_WORDS[option.kind]}", value)
    if not _in_int_range(option.kind, v):
        raise loc.error(path, f"must be at most {INT_MAX:,} in size (a 32-bit integer)", value)
    if option.check is not None and not option.check(v):
        raise loc.error(path, f"must be {option.check.rule}", value,
                        suggestion=suggest(value, one_of_values(option)))
    return v


def passes(option: Option, value: Any) -> bool:
    """True when a normalised value is allowed by the option (null by `nullable`)."""
    if value is None:
        return option.nullable
    if not _in_int_range(option.kind, value):
        return False
    return option.check is None or option.check(value)


def _in_int_range(kind: str, value: Any) -> bool:
    items = value if kind == "ints" and isinstance(value, (list, tuple)) else [value]
    return kind not in ("int", "ints") or all(
        not isinstance(x, int) or -INT_MAX - 1 <= x <= INT_MAX for x in items)


def one_of_values(option: Option) -> list[str]:
    """The allowed words of a `one_of` check (for suggestions); [] for other checks."""
    rule = option.check.rule if option.check else ""
    return rule[len("one of "):].split(", ") if rule.startswith("one of ") else []


def same(a: Any, b: Any) -> bool:
    """Equality that keeps true apart from 1 and 1.0 apart from True (YAML types differ)."""
    return key(a) == key(b)


def key(value: Any) -> Any:
    """A hashable, type-aware identity of a value: lists by content, bools not numbers."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if _number(value):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    return ("j", json.dumps(value, sort_keys=True, separators=(",", ":")))


def encode(value: Any) -> Any:
    """Optuna categoricals hold None/bool/int/float/str only: other choices become JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
