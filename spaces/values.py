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

from trainers.options import KIND_WORDS, NOT_OF_KIND, Option, plain
from trainers.options import coerce_kind as _coerce

from .errors import MISSING, suggest
from .yamlio import Locator, Path

INT_MAX = 2 ** 31 - 1


def coerce_kind(kind: str, value: Any) -> Any:
    """trainers.options.coerce_kind, with MISSING for a value of another kind."""
    v = _coerce(kind, value)
    return MISSING if v is NOT_OF_KIND else v




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


def word(value: Any) -> str:
    """A value as a short YAML word, for the tree and messages: true, null, 0.001."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return str(value)


def same(a: Any, b: Any) -> bool:
    """Equality that keeps true apart from 1 and 1.0 apart from True (YAML types differ)."""
    return key(a) == key(b)


def key(value: Any) -> Any:
    """A hashable, type-aware identity of a value: lists by content, bools not numbers."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    return ("j", json.dumps(value, sort_keys=True, separators=(",", ":")))


def encode(value: Any) -> Any:
    """Optuna categoricals hold None/bool/int/float/str only: other choices become JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
