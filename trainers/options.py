"""Option declarations: the types, defaults and checks of every training setting.

Pure data, no torch import: the search-space language (`spaces/`) validates against these
declarations and the trainer (`trainers/`) takes its defaults from them. The catalog itself
(which groups and names exist) lives in `trainers/catalog.py`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

# Value kinds a setting may have. "floats"/"ints" are fixed-length or free-length lists of numbers,
# "mapping" is a free-form dict (e.g. keyword arguments for a user's factory), "any" a plain
# YAML/JSON value (a factory's own argument or a user training function's parameter).
KINDS = ("float", "int", "bool", "str", "floats", "ints", "mapping", "any")
KIND_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false",
              "str": "a string", "floats": "a list of numbers", "ints": "a list of integers",
              "mapping": "a mapping",
              "any": "a plain value (null, true/false, number, string, or a list or mapping "
                     "of them)"}


class _NotOfKind:
    def __repr__(self) -> str:
        return "NOT_OF_KIND"


NOT_OF_KIND: Any = _NotOfKind()  # what coerce_kind returns for a value of another kind


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def coerce_kind(kind: str, value: Any) -> Any:
    """The value normalised to its kind (ints become floats for float options), or NOT_OF_KIND.
    Booleans are never numbers (YAML `true` is not 1); floats are finite. The one kind check of
    the space language (spaces/values.py) and the trainer (trainers/settings.py)."""
    if kind == "float":
        return float(value) if _number(value) and math.isfinite(value) else NOT_OF_KIND
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else NOT_OF_KIND
    if kind == "bool":
        return value if isinstance(value, bool) else NOT_OF_KIND
    if kind == "str":
        return value if isinstance(value, str) else NOT_OF_KIND
    if kind in ("floats", "ints"):
        if not isinstance(value, (list, tuple)):
            return NOT_OF_KIND
        items = [coerce_kind(kind[:-1], x) for x in value]
        return NOT_OF_KIND if any(x is NOT_OF_KIND for x in items) else items
    if kind == "mapping":
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        return dict(value) if ok else NOT_OF_KIND
    if kind == "any":
        return value if plain(value) else NOT_OF_KIND
    raise ValueError(f"unknown kind {kind!r}")  # pragma: no cover - Option checks its kind


def plain(value: Any) -> bool:
    """JSON-plain: what a trial config may carry through Ray, Optuna, MLflow and YAML files."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    return False


@dataclass(frozen=True)
class Check:
    """A rule on one value. `test(value)` is True when the value is allowed; `rule` says what
    was expected, in words a user reads in an error message."""

    rule: str
    test: Callable[[Any], bool]

    def __call__(self, value: Any) -> bool:
        return bool(self.test(value))


def interval(low: float | None = None, high: float | None = None, *,
             low_open: bool = False, high_open: bool = False) -> Check:
    """Closed by default, as every range of the space language; `*_open` marks an open end."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"

    def test(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        if high is not None and (v >= high if high_open else v > high):
            return False
        return True

    return Check(f"in {left}{lo}, {hi}{right}", test)


def one_of(*values: Any) -> Check:
    return Check("one of " + ", ".join(map(str, values)), lambda v: v in values)


def each(check: Check, length: int | None = None) -> Check:
    """A check applied to every element of a list (and its length, when given)."""
    what = f"a list of {length} numbers each " if length else "a list of numbers each "

    def test(v: Any) -> bool:
        if not isinstance(v, (list, tuple)) or not v:
            return False
        if length is not None and len(v) != length:
            return False
        return all(check(x) for x in v)

    return Check(what + check.rule, test)


def matches_factory(v: Any) -> bool:
    if not isinstance(v, str) or v.count(":") != 1:
        return False
    module, attr = v.split(":")
    return bool(module) and bool(attr) and all(p.isidentifier() for p in module.split(".")) \
        and attr.isidentifier()


FACTORY = Check('an import path "package.module:function"', matches_factory)
PROB = interval(0.0, 1.0, high_open=True)  # probabilities such as dropout p live in [0, 1)
PROB_CLOSED = interval(0.0, 1.0)  # per-sample application probabilities may be 1
NONNEG = interval(0.0)
POSITIVE = interval(0.0, low_open=True)
POS_INT = interval(1)
NONNEG_INT = interval(0)


@dataclass(frozen=True)
class Option:
    """One setting: its value kind, default, check, and a line of documentation.

    `nullable` means null (None) is a valid value meaning "off"/"automatic" (the doc says which).
    `required` means there is no usable default: the user must give a value.
    `searchable` is False for settings that make no sense to search (paths, factories).
    """

    kind: str
    default: Any
    doc: str
    check: Check | None = None
    nullable: bool = False
    required: bool = False
    searchable: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown option kind {self.kind!r}; expected one of {KINDS}")


@dataclass(frozen=True)
class Group:
    """A section of the training settings (data, model, optimizer, ...).

    A group with a `selector` is a component: the selector's value (e.g. `optimizer.name: sgd`)
    picks a variant, and each variant adds its own options to the common ones.
    """

    name: str
    doc: str
    options: dict[str, Option]
    selector: str | None = None
    variants: dict[str, dict[str, Option]] = field(default_factory=dict)

    def options_for(self, variant: str | None) -> dict[str, Option]:
        """All options valid for one variant (common + the variant's own)."""
        if self.selector is None:
            return dict(self.options)
        return {**self.options, **self.variants.get(variant, {})}

    def all_keys(self) -> set[str]:
        keys = set(self.options)
        for extra in self.variants.values():
            keys |= set(extra)
        return keys

    def variants_with(self, key: str) -> list[str]:
        """The variants for which `key` is a valid option."""
        if key in self.options:
            return list(self.variants)
        return [v for v, extra in self.variants.items() if key in extra]
