"""The pruner registry: the space's `pruner.name` → a Ray Tune trial scheduler.

Early stopping is Tune's job (Optuna's own pruners never run inside Tune). Every scheduler
counts time in epochs (`training_iteration`, which the trainable sets to the epoch number) and
watches the objective; with several objectives `asha` and `median` rank each epoch's point by
Pareto dominance (search/tune/pareto_pruners.py), the others refuse them. `pbt` is a mode of its own: it cannot share the run with a
searcher, so its population is sampled up front and its mutations come from the space.
What each pruner can do (its options and their defaults, a searcher beside it, several
objectives) is its entry in spaces/capabilities.py, which the space validator reads too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from search.errors import UserError
from search.lifecycle.plan import EPOCH_METRICS, Objective
from spaces.capabilities import PRUNERS as CAPS, PrunerCaps, mutable, pruned_on
from spaces.section_types import Pruner

TIME_ATTR = "training_iteration"


@dataclass(frozen=True)
class PrunerInfo:
    caps: PrunerCaps  # what it can do, shared with the space validator
    # (section, objectives, max_t, space); the first objective alone for a single-objective one
    build: Callable[[Pruner, tuple[Objective, ...], int, Any], Any]
    # (section, max_t) -> trials the scheduler needs started at once, running or paused
    holds: Callable[[Pruner, int], int] | None = None

    name = property(lambda self: self.caps.name)
    doc = property(lambda self: self.caps.doc)
    uses_searcher = property(lambda self: self.caps.uses_searcher)
    watches_metric = property(lambda self: self.caps.watches_metric)


def _asha(section: Pruner, objs: tuple[Objective, ...], max_t: int, space: Any):
    grace = min(section.grace_period, max_t)
    rf = float(section.reduction_factor)
    if len(objs) > 1:
        from search.tune.pareto_pruners import ParetoASHA

        return ParetoASHA(objs, EPOCH_METRICS, max_t=max_t, grace_period=grace,
                          reduction_factor=rf, brackets=section.brackets,
                          seed=int(space.seed or 0))
    from ray.tune.schedulers import ASHAScheduler

    obj = objs[0]
    return ASHAScheduler(time_attr=TIME_ATTR, metric=obj.metric, mode=obj.mode, max_t=max_t,
                         grace_period=grace, reduction_factor=rf, brackets=section.brackets)


def _hyperband(section: Pruner, objs: tuple[Objective, ...], max_t: int, space: Any):
    from ray.tune.schedulers import HyperBandScheduler

    obj = objs[0]
    return HyperBandScheduler(time_attr=TIME_ATTR, metric=obj.metric, mode=obj.mode, max_t=max_t,
                              reduction_factor=float(section.reduction_factor))


def _hyperband_holds(section: Pruner, max_t: int) -> int:
    """Trials in HyperBand's first (largest) bracket: Tune's own n0 for s = s_max. A bracket is
    halved only when all its trials reached the milestone, the early ones paused meanwhile; if
    Tune may start no more trials than run at once, the bracket never fills and nothing is
    pruned (with 2 slots: brackets of 2)."""
    eta = float(section.reduction_factor)
    s_max_1 = int(round(math.log(max(1, max_t)) / math.log(eta))) + 1
    s = s_max_1 - 1
    return int(math.ceil(s_max_1 / (s + 1) * eta ** s))


def _median(section: Pruner, objs: tuple[Objective, ...], max_t: int, space: Any):
    grace = int(section.grace_period)
    if len(objs) > 1:
        from search.tune.pareto_pruners import ParetoMedian

        return ParetoMedian(objs, EPOCH_METRICS, grace_period=grace, min_samples_required=3)
    from ray.tune.schedulers import MedianStoppingRule

    # time_attr in epochs: Tune's default counts the grace period in seconds.
    return MedianStoppingRule(time_attr=TIME_ATTR, metric=objs[0].metric, mode=objs[0].mode,
                              grace_period=float(grace), min_samples_required=3)


def _none(section: Pruner, objs: tuple[Objective, ...], max_t: int, space: Any):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _pbt(section: Pruner, objs: tuple[Objective, ...], max_t: int, space: Any):
    from ray.tune.schedulers import PopulationBasedTraining

    obj = objs[0]
    # Synchronous: members exploit and explore when all of them reached the same epoch, so a
    # seed gives one population history. Ray's asynchronous default decides by whichever
    # member reports first (start-up and load make that differ from run to run) and may find
    # no member to copy at all when one member runs ahead of the others.
    return PopulationBasedTraining(
        time_attr=TIME_ATTR, metric=obj.metric, mode=obj.mode,
        perturbation_interval=float(section.perturbation_interval),
        quantile_fraction=float(section.quantile_fraction),
        hyperparam_mutations={"params": mutations_of(space)}, synch=True, log_config=False)


def mutations_of(space: Any) -> dict[str, Any]:
    """PBT's hyperparam_mutations: a Tune domain per searched parameter that can change in the
    middle of training (optimiser settings, regularisation, augmentation, ...)."""
    from optuna import distributions as d
    from ray import tune

    dists = space.distributions()
    if dists is None:
        raise UserError("pruner.name: pbt needs a space without conditional parameters (a "
                        "mutation may not switch a parameter on or off); use asha, or fix the "
                        "choice that the conditional parameters depend on")
    paths = {p.name: p.path for p in getattr(space, "params", [])}
    dists = {name: dist for name, dist in dists.items() if mutable(paths.get(name, name))}
    if not dists:
        raise UserError("pruner.name: pbt needs a searched parameter it can change mid-training "
                        "(an optimizer, regularization or augment setting), got none; model and "
                        "data settings cannot change under a running checkpoint")
    out: dict[str, Any] = {}
    for name, dist in dists.items():
        if isinstance(dist, d.CategoricalDistribution):
            out[name] = list(dist.choices)
        elif isinstance(dist, d.IntDistribution):
            out[name] = (tune.lograndint(dist.low, dist.high + 1) if dist.log
                         else tune.qrandint(dist.low, dist.high, dist.step))
        elif dist.log:
            out[name] = tune.loguniform(dist.low, dist.high)
        elif dist.step is not None:
            out[name] = tune.quniform(dist.low, dist.high, dist.step)
        else:
            out[name] = tune.uniform(dist.low, dist.high)
    return out


_BUILDS = {"asha": _asha, "hyperband": _hyperband, "median": _median, "none": _none,
           "pbt": _pbt}
_HOLDS = {"hyperband": _hyperband_holds}
PRUNERS: dict[str, PrunerInfo] = {name: PrunerInfo(caps, _BUILDS[name], _HOLDS.get(name))
                                  for name, caps in CAPS.items()}


def pruner_info(space: Any) -> PrunerInfo:
    name = space.pruner.name
    info = PRUNERS.get(name)
    if info is None:
        raise UserError(f"pruner.name: unknown pruner {name!r}; expected one of "
                        f"{', '.join(PRUNERS)}")
    return info


def started_at_once(space: Any, max_t: int, slots: int, capped: bool) -> int:
    """Tune's max_concurrent_trials: the trials that run at once, or more for a scheduler that
    pauses trials and needs many started (the extra ones wait for a CPU, which a paused trial
    gives back). Not above the user's own `resources.max_concurrent` (`capped`): Tune's one
    limit also caps the running trials."""
    info = pruner_info(space)
    if info.holds is None or capped:
        return slots
    return max(slots, info.holds(space.pruner, max(1, int(max_t))))


def holding_note(space: Any, max_t: int, started: int) -> str | None:
    """A line for the user when the scheduler needs more trials started than it may have."""
    info = pruner_info(space)
    if info.holds is None:
        return None
    need = info.holds(space.pruner, max(1, int(max_t)))
    if started >= need:
        return None
    return (f"note: pruner {info.name} halves a bracket of up to {need} trials once all of them "
            f"reached its milestone, but resources.max_concurrent lets {started} start at once: "
            "it will prune little; use asha, or a larger max_concurrent")


def build_scheduler(space: Any, objectives: Objective | Sequence[Objective], max_t: int):
    """The Tune scheduler for the space's pruner, watching `objectives` (one, or all of the
    space's) over `max_t` epochs."""
    objs = (objectives,) if isinstance(objectives, Objective) else tuple(objectives)
    section = space.pruner
    info = pruner_info(space)
    if len(objs) > 1 and not info.caps.multi_objective:
        able = ", ".join(n for n, c in CAPS.items() if c.multi_objective)
        raise UserError(f"pruner.name: {info.name} needs a single objective, the space has "
                        f"{len(objs)}; use one of {able}")
    if info.watches_metric and not pruned_on([o.metric for o in objs]):
        which = "the first objective" if len(objs) == 1 else "any objective"
        raise UserError(f"pruner.name: {info.name} compares trials epoch by epoch on {which}, "
                        f"but {', '.join(repr(o.metric) for o in objs)} "
                        f"{'is' if len(objs) == 1 else 'are'} only known when a trial ends; "
                        f"add an epoch metric ({', '.join(EPOCH_METRICS[:3])}) or use "
                        "pruner none")
    return info.build(section, objs, max(1, int(max_t)), space)


def decision_epochs(scheduler: Any, max_t: int) -> tuple[int, ...] | None:
    """The epochs before the last at which `scheduler` can decide about a trial, when that is
    only some of them; None when any epoch can matter (median stopping, HyperBand's pauses, PBT,
    the Pareto rankings, a wrapped scheduler). Ray's ASHA records a trial at its first result at
    or past each rung and passes every other result by; Tune's FIFO never decides. A trial then
    need report only there and at its end (search/tune/trainable.py batches the epochs between),
    which on small data saves most of a run's time: each report is a round trip to the driver."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if type(scheduler) is FIFOScheduler:
        return ()
    if type(scheduler) is not ASHAScheduler:
        return None
    try:
        rungs = {math.ceil(m) for b in scheduler._brackets for m, _ in b._rungs}
    except (AttributeError, TypeError):  # a Ray that keeps its rungs elsewhere: every epoch
        return None
    return tuple(sorted(e for e in rungs if 1 <= e < max_t))

