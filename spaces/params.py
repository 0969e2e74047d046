"""The searched parameters of a space, as Optuna sees them.

A Param is one Optuna parameter (float, int or categorical) or a branch constant (a literal
inside a branch: set when the branch is taken, never an Optuna parameter). Its `condition` is a
conjunction: every Condition must hold (the branches it lives in, then its `when`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)

from .optuna_private import contains
from .values import encode, same, word

KINDS = ("float", "int", "categorical", "constant")


@dataclass(frozen=True)
class Condition:
    """True when the categorical parameter `param` was sampled and took one of `values`."""

    param: str
    values: tuple[Any, ...]

    def holds(self, sampled: dict[str, Any]) -> bool:
        return self.param in sampled and any(same(sampled[self.param], v) for v in self.values)


@dataclass(frozen=True)
class Param:
    name: str  # the Optuna parameter name (unique in the space)
    path: str  # the setting it sets, "group.option"
    kind: str  # one of KINDS
    distribution: BaseDistribution | None  # None for constants
    condition: tuple[Condition, ...] = ()
    parent: Condition | None = None  # the branch it was written in (also in `condition`)
    when: tuple[Condition, ...] = ()  # its own `when` (also in `condition`)
    choices: tuple[Any, ...] = ()  # decoded choices of a categorical, in order
    value: Any = None  # a constant's value
    spec_path: str = field(default="", compare=False)  # where it is written in the file
    line: int | None = field(default=None, compare=False)

    @property
    def group(self) -> str:
        return self.path.split(".", 1)[0]

    @property
    def option(self) -> str:
        return self.path.split(".", 1)[1]

    @property
    def searched(self) -> bool:
        return self.kind != "constant"

    def active(self, sampled: dict[str, Any]) -> bool:
        """Whether the parameter is sampled, given the (decoded) values sampled before it."""
        return all(c.holds(sampled) for c in self.condition)

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask the trial for a value; returns it decoded (lists stay lists)."""
        d = self.distribution
        if isinstance(d, FloatDistribution):
            return trial.suggest_float(self.name, d.low, d.high, log=d.log, step=d.step)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.name, d.low, d.high, log=d.log, step=d.step)
        if isinstance(d, CategoricalDistribution):
            return self.decode(trial.suggest_categorical(self.name, d.choices))
        return self.value

    def decode(self, value: Any) -> Any:
        """A categorical's value from its Optuna form (encoded text) or its decoded form."""
        if self.kind != "categorical":
            return value
        for choice in self.choices:
            if same(encode(choice), value) or same(choice, value):
                return choice
        raise KeyError(value)

    def contains(self, value: Any) -> bool:
        """Whether a decoded value lies in the parameter's domain."""
        d = self.distribution
        if self.kind == "categorical":
            return any(same(c, value) for c in self.choices)
        if self.kind == "constant":
            return same(self.value, value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(d, IntDistribution) and not isinstance(value, int):
            return False
        return contains(d, d.to_internal_repr(value))

    def grid(self) -> list[Any]:
        """Every value of the domain, for the grid sampler (floats need a step)."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if isinstance(d, IntDistribution):
            return list(range(d.low, d.high + 1, d.step))
        if isinstance(d, FloatDistribution) and d.step is not None:
            n = int(round((d.high - d.low) / d.step))
            return [round(d.low + i * d.step, 12) for i in range(n + 1)]
        raise ValueError(f"{self.name} has no finite grid")

    def domain(self) -> str:
        """The domain in words, for `search validate`: `float in [0.001, 0.1], log`."""
        d = self.distribution
        if self.kind == "constant":
            return f"= {word(self.value)}"
        if self.kind == "categorical":
            return "one of " + ", ".join(word(c) for c in self.choices)
        extra = ", log" if d.log else ""
        if d.step is not None and not (self.kind == "int" and d.step == 1):
            extra += f", step {word(d.step)}"
        return f"{self.kind} in [{word(d.low)}, {word(d.high)}]{extra}"
