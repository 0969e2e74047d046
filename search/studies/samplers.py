"""The sampler registry: the space's `sampler.name` → an Optuna sampler.

What each sampler can do (its options and their defaults, several objectives, conditional
spaces, finite domains) is its entry in spaces/capabilities.py, which the space validator reads
too; here each name gets its build function, taking the space's sampler section, the space and
the number of objectives. Optuna is imported lazily so `search --help` stays fast.
"""
from __future__ import annotations

import contextlib
import hashlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from search.errors import UserError
from spaces.capabilities import SAMPLERS as CAPS, SamplerCaps
from spaces.section_types import Sampler


@dataclass(frozen=True)
class SamplerInfo:
    caps: SamplerCaps  # what it can do, shared with the space validator
    build: Callable[[Sampler, Any, int, int | None], Any]  # (section, space, n_obj., seed)

    name = property(lambda self: self.caps.name)
    doc = property(lambda self: self.caps.doc)
    multi_objective = property(lambda self: self.caps.multi_objective)


def derive_seed(seed: int | None, n_trials: int) -> int | None:
    """A seed for a sampler opened on a study that already has `n_trials` trials: a continued
    study (or a resumed run) must not replay the first run's random draws."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}:{n_trials}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@contextlib.contextmanager
def _experimental_ok():
    """Optuna marks features this service relies on as experimental: say it once, here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental.*")
        yield


def _tpe(section: Sampler, space: Any, n_obj: int, seed: int | None):
    import optuna

    # `group` lets a multivariate TPE model conditional spaces (each set of parameters that
    # occur together); it only matters, and is only turned on, when there are conditionals.
    group = section.group and section.multivariate and space.has_conditionals
    with _experimental_ok():  # multivariate/group are "experimental" in Optuna 5
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=section.n_startup_trials,
            multivariate=section.multivariate, group=group,
            constant_liar=section.constant_liar)


def _gp(section: Sampler, space: Any, n_obj: int, seed: int | None):
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=section.n_startup_trials)


def _cmaes(section: Sampler, space: Any, n_obj: int, seed: int | None):
    import importlib.util

    import optuna

    if importlib.util.find_spec("cmaes") is None:  # Optuna imports it only at the first sample
        raise UserError("sampler.name: cmaes needs the `cmaes` package (pip install cmaes); "
                        "or use tpe or gp")

    # CMA-ES models only float/int parameters; Optuna samples categoricals and conditional
    # parameters with the independent (random) sampler given here.
    return optuna.samplers.CmaEsSampler(
        seed=seed, n_startup_trials=section.n_startup_trials,
        independent_sampler=optuna.samplers.RandomSampler(seed=seed),
        warn_independent_sampling=False, consider_pruned_trials=False)


def _random(section: Sampler, space: Any, n_obj: int, seed: int | None):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _qmc(section: Sampler, space: Any, n_obj: int, seed: int | None):
    import optuna

    with _experimental_ok():
        return optuna.samplers.QMCSampler(
            qmc_type=section.qmc_type, scramble=True, seed=seed,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_asynchronous_seeding=False, warn_independent_sampling=False)


def _nsga2(section: Sampler, space: Any, n_obj: int, seed: int | None):
    import optuna

    trials = space.budget.trials
    # Optuna's default population (50) is larger than most budgets here: a generation that
    # never completes is random search. Keep at least 2 generations inside the budget.
    population = max(4, min(50, trials // 2))
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)


def _grid(section: Sampler, space: Any, n_obj: int, seed: int | None):
    import optuna

    if space.distributions() is None:
        raise UserError("sampler.name: grid needs a space without conditional parameters (a "
                        "grid point must set every parameter); use tpe or random")
    try:
        grid = space.grid()
    except ValueError as err:
        raise UserError(f"sampler.name: grid needs finite domains: {err}; give floats a step "
                        "or a list of choices") from None

    class AskTellGrid(optuna.samplers.GridSampler):
        """GridSampler without its study.stop() after the last point, which Optuna allows only
        inside study.optimize; the searcher asks is_exhausted() before each trial instead."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    return AskTellGrid(grid, seed=seed)


_BUILDS = {"tpe": _tpe, "gp": _gp, "cmaes": _cmaes, "random": _random, "grid": _grid,
           "qmc": _qmc, "nsga2": _nsga2}
SAMPLERS: dict[str, SamplerInfo] = {name: SamplerInfo(caps, _BUILDS[name])
                                    for name, caps in CAPS.items()}


def build_sampler(space: Any, n_objectives: int, n_existing: int = 0):
    """The Optuna sampler the space asks for, seeded for a study with `n_existing` trials."""
    section = space.sampler
    name = section.name
    info = SAMPLERS.get(name)
    if info is None:
        raise UserError(f"sampler.name: unknown sampler {name!r}; expected one of "
                        f"{', '.join(SAMPLERS)}")
    if n_objectives > 1 and not info.multi_objective:
        able = ", ".join(n for n, c in CAPS.items() if c.multi_objective)
        raise UserError(f"sampler.name: {name} handles one objective, the space has "
                        f"{n_objectives}; use one of {able}")
    return info.build(section, space, n_objectives, derive_seed(section.seed, n_existing))
