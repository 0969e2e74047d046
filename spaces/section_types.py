"""The search-side sections as a `Space` hands them out: frozen, typed objects.

spaces/sections.py validates each section and fills in its defaults; a default is written in one
place only, the option tables there and each sampler's and pruner's entry in
spaces/capabilities.py. `typed(found)` turns the validated mappings into these objects, which
search/ reads by attribute (`space.budget.max_epochs`, `space.pruner.grace_period`); `as_dict()`
gives a section back as the space file writes it (for `to_yaml`, MLflow params, summaries).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _given(section: Any) -> dict[str, Any]:
    """A sampler's or pruner's fields without those that do not apply to it (None)."""
    return {f.name: getattr(section, f.name) for f in fields(section)
            if getattr(section, f.name) is not None}


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str  # "maximize" | "minimize" (Optuna's words)

    @property
    def mode(self) -> str:  # Tune's words
        return "max" if self.direction == "maximize" else "min"

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Budget:
    trials: int
    max_epochs: int | None = None  # a space's is never None: train.epochs' largest by default
    time_limit: float | None = None  # seconds
    target: float | None = None      # stop the run once the first objective reaches it
    seeds: int = 1                   # trainings per config; the objective is their mean
    seed_penalty: float = 0.0        # objective = mean - c*std (toward worse)

    def as_dict(self) -> dict[str, Any]:
        """As the file writes it; one seed (the default) leaves both seed options out, so a
        space without them writes (and logs) what it always did."""
        out = asdict(self)
        if self.seeds == 1:
            del out["seeds"], out["seed_penalty"]
        return out


@dataclass(frozen=True)
class Sampler:
    """`sampler:`; an option that does not apply to this sampler is None (the options of each
    are its entry's in spaces/capabilities.py)."""

    name: str
    seed: int  # the master seed unless given
    n_startup_trials: int | None = None
    multivariate: bool | None = None
    group: bool | None = None
    constant_liar: bool | None = None
    qmc_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return _given(self)


@dataclass(frozen=True)
class Pruner:
    """`pruner:`; an option that does not apply to this pruner is None."""

    name: str
    grace_period: int | None = None
    reduction_factor: int | None = None
    brackets: int | None = None
    perturbation_interval: int | None = None
    quantile_fraction: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return _given(self)


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for."""

    cpu: float
    gpu: float
    max_concurrent: int | None = None  # None: as many as fit

    @property
    def threads(self) -> int:
        """Torch threads of one trial: its whole CPUs (a fractional CPU still gets one)."""
        return max(1, int(math.floor(self.cpu)))

    def request(self) -> dict[str, float]:
        """The bundle Ray is asked for per trial (what tune.with_resources receives)."""
        out = {"CPU": float(self.cpu)}
        if self.gpu:
            out["GPU"] = float(self.gpu)
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Tracking:
    enabled: bool
    uri: str | None
    experiment: str     # the space's name unless given
    keep_checkpoints: int
    register_as: str    # the space's name unless given

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Stage:
    """One post-search stage: its name (finetune, distill, quantize) and its validated options,
    which trainers.stages.run_stage takes as the plain mapping `as_dict()` gives."""

    name: str
    options: dict[str, Any] = field(hash=False)  # read-only: as_dict() hands out a copy

    @property
    def enabled(self) -> bool:
        return bool(self.options["enabled"])

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.name, **copy.deepcopy(self.options)}


def written(section: Any) -> Any:
    """A section as the space file writes it: plain values (objectives and stages a list)."""
    if isinstance(section, tuple):
        return [s.as_dict() for s in section]
    return section.as_dict()


def typed(found: dict[str, Any]) -> dict[str, Any]:
    """The validated sections (mappings with every default filled) as these objects."""
    return {
        "objective": tuple(Objective(**o) for o in found["objective"]),
        "budget": Budget(**found["budget"]),
        "sampler": Sampler(**found["sampler"]),
        "pruner": Pruner(**found["pruner"]),
        "resources": Resources(**found["resources"]),
        "tracking": Tracking(**found["tracking"]),
        "stages": tuple(Stage(s["stage"], {k: v for k, v in s.items() if k != "stage"})
                        for s in found["stages"]),
    }
