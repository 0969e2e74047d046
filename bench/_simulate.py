"""The benchmark matrix's simulator: a search over an offline problem (bench/_problems.py) with
`workers` trials side by side, each epoch one unit of time, until an epoch budget is spent.
Nothing trains; the search side is real:

- **ours** (`Arm.family == "ours"`): the problem's space file through spaces.load_space, the
  sampler from search.studies.samplers.build_sampler and the Tune scheduler from
  search.tune.pruners.build_scheduler, exactly as `search run` builds them (a section left out =
  what `search run` builds by default). Trials are asked as the searcher asks them
  (search.studies.study.ask + Space.define_by_run), each epoch's result goes to the scheduler through
  Tune's TrialScheduler API (real `Trial` objects) and, with one objective, to Optuna as an
  intermediate value, as search/tune/searcher.py does; the end is told by search.tune.searcher.conclude,
  the searcher's own function (COMPLETE with the final values, or PRUNED).
- **optuna**: plain Optuna's defaults, `create_study` with TPESampler and MedianPruner (seeded),
  `trial.report` / `should_prune` every epoch (with several objectives Optuna cannot prune).
- **ray**: Ray Tune's defaults, a Tuner given no search algorithm and no scheduler:
  BasicVariantGenerator (random sampling of the space's domains, seeded) and FIFOScheduler.

Every arm suggests from the same space (the same parameters and ranges). The score needs no
study: the trials that ran every epoch, what they reported at their last epoch, and the
noise-free truth of their configuration.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from _problems import Problem, normalised, space_text


@dataclass(frozen=True)
class Arm:
    name: str
    family: str                 # ours | optuna | ray
    sampler: dict | None = None  # ours: the space's sampler section (None = the default)
    pruner: dict | None = None   # ours: the space's pruner section (None = the default)
    objectives: str = "any"      # any | single | multi: the problems it applies to
    prunes_only: bool = False    # differs from the default by its pruner alone

    def applies(self, p: Problem) -> bool:
        if self.prunes_only and p.max_t == 1:  # a table: one epoch, nothing to prune
            return False
        return self.objectives == "any" or (self.objectives == "multi") == p.multi


ARMS = {a.name: a for a in (
    Arm("default", "ours"),  # what `search run` builds when the space names neither
    Arm("tpe+median", "ours", pruner={"name": "median"}, prunes_only=True),
    Arm("tpe+none", "ours", pruner={"name": "none"}, prunes_only=True),
    Arm("random+asha", "ours", sampler={"name": "random"}),
    # the default TPE with one of its own defaults turned off
    Arm("tpe-univariate+asha", "ours", sampler={"name": "tpe", "multivariate": "false"}),
    Arm("tpe-noliar+asha", "ours", sampler={"name": "tpe", "constant_liar": "false"}),
    Arm("gp+asha", "ours", sampler={"name": "gp"}),
    Arm("cmaes+asha", "ours", sampler={"name": "cmaes"}, objectives="single"),
    Arm("nsga2+asha", "ours", sampler={"name": "nsga2"}, objectives="multi"),
    Arm("optuna-default", "optuna"),
    Arm("ray-default", "ray"),
)}


@dataclass
class Finished:
    used: int         # epochs spent (by every trial) when it finished
    observed: tuple   # its objectives at its last epoch, as reported
    true: tuple       # the noise-free final values of its configuration


@dataclass
class Run:
    finished: list[Finished] = field(default_factory=list)
    trials: int = 0
    used: int = 0


class _Controller:
    """What a Tune scheduler asks of the TuneController: the live trials (running here)."""

    def __init__(self):
        self.live: dict[str, Any] = {}

    def get_live_trials(self):
        return list(self.live.values())

    def get_trials(self):
        return list(self.live.values())


class _Ours:
    def __init__(self, p: Problem, arm: Arm, seed: int, trials: int):
        import optuna

        from search.studies import study as studies
        from search.tune.pruners import build_scheduler
        from search.studies.samplers import build_sampler
        from spaces import load_space

        self.studies = studies
        self.space = load_space(space_text(p, seed=seed, trials=trials, sampler=arm.sampler,
                                           pruner=arm.pruner), filename=f"bench_{p.name}.yaml")
        self.objectives = self.space.objectives
        sampler = build_sampler(self.space, len(self.objectives))
        self.scheduler = build_scheduler(self.space, self.objectives,
                                         self.space.budget.max_epochs)
        self.study = optuna.create_study(directions=[o.direction for o in self.objectives],
                                         sampler=sampler, study_name=f"bench_{p.name}")
        self.ctrl = _Controller()
        self.names: dict[int, str] = {}

    def start(self, index: int):
        from ray.tune.experiment import Trial

        trial = self.studies.ask(self.study, "bench")
        x = dict(self.space.define_by_run(trial)["params"])
        x.pop("problem", None)
        tune_trial = Trial("bench_trial", trial_id=f"t{index:05d}", stub=True)
        self.ctrl.live[tune_trial.trial_id] = tune_trial
        self.scheduler.on_trial_add(self.ctrl, tune_trial)
        return (trial, tune_trial), x

    def result(self, handle, t: int, metrics: dict, last: bool) -> bool:
        from ray.tune.schedulers import TrialScheduler

        from search.tune.searcher import FINAL_PREFIX, FINISHED_KEY, conclude

        trial, tune_trial = handle
        result = {"training_iteration": t, **metrics}
        if last:  # the trainable's last report carries the end of the trial
            result.update({FINISHED_KEY: True, **{FINAL_PREFIX + o.metric: metrics[o.metric]
                                                  for o in self.objectives}})
        action = self.scheduler.on_trial_result(self.ctrl, tune_trial, result)
        if len(self.objectives) == 1:  # the searcher's intermediate value
            trial.report(float(metrics[self.objectives[0].metric]), t)
        if last or action == TrialScheduler.STOP:
            self.scheduler.on_trial_complete(self.ctrl, tune_trial, result)
            self.ctrl.live.pop(tune_trial.trial_id, None)
            conclude(self.study, trial.number, self.objectives, result)
            return False
        return True


class _Optuna:
    def __init__(self, p: Problem, arm: Arm, seed: int, trials: int):
        import optuna

        from spaces import load_space

        self.space = load_space(space_text(p, seed=seed, trials=trials),
                                filename=f"bench_{p.name}.yaml")
        self.objectives = self.space.objectives
        # create_study's defaults (TPESampler(), MedianPruner()), seeded for repeatable runs
        self.study = optuna.create_study(directions=[o.direction for o in self.objectives],
                                         sampler=optuna.samplers.TPESampler(seed=seed),
                                         pruner=optuna.pruners.MedianPruner())

    def start(self, index: int):
        trial = self.study.ask()
        x = dict(self.space.define_by_run(trial)["params"])
        x.pop("problem", None)
        return trial, x

    def result(self, trial, t: int, metrics: dict, last: bool) -> bool:
        from optuna.trial import TrialState

        values = [float(metrics[o.metric]) for o in self.objectives]
        if last:
            self.study.tell(trial, values if len(values) > 1 else values[0])
            return False
        if len(values) == 1:
            trial.report(values[0], t)
            if trial.should_prune():
                self.study.tell(trial, state=TrialState.PRUNED)
                return False
        return True


def tune_domains(space) -> dict:
    """The space's distributions as Ray Tune domains (what a Tune user writes by hand)."""
    from optuna import distributions as d
    from ray import tune

    out = {}
    for name, dist in space.distributions().items():
        if isinstance(dist, d.CategoricalDistribution):
            out[name] = tune.choice(list(dist.choices))
        elif isinstance(dist, d.IntDistribution):
            out[name] = (tune.lograndint(dist.low, dist.high + 1) if dist.log
                         else tune.randint(dist.low, dist.high + 1))
        else:
            out[name] = (tune.loguniform(dist.low, dist.high) if dist.log
                         else tune.uniform(dist.low, dist.high))
    return out


class _Ray:
    def __init__(self, p: Problem, arm: Arm, seed: int, trials: int):
        from ray import tune
        from ray.tune.schedulers import FIFOScheduler
        from ray.tune.search.basic_variant import BasicVariantGenerator

        from spaces import load_space

        self.space = load_space(space_text(p, seed=seed, trials=trials),
                                filename=f"bench_{p.name}.yaml")
        tune.register_trainable("bench_trial", lambda config: None)
        self.generator = BasicVariantGenerator(random_state=seed)
        self.generator.add_configurations({f"bench_{p.name}": {
            "run": "bench_trial", "config": tune_domains(self.space), "num_samples": trials}})
        self.scheduler = FIFOScheduler()
        self.ctrl = _Controller()

    def start(self, index: int):
        trial = self.generator.next_trial()
        if trial is None:
            return None, None
        self.scheduler.on_trial_add(self.ctrl, trial)
        x = dict(self.space.config_from_params(dict(trial.config))["params"])
        x.pop("problem", None)
        return trial, x

    def result(self, trial, t: int, metrics: dict, last: bool) -> bool:
        from ray.tune.schedulers import TrialScheduler

        action = self.scheduler.on_trial_result(self.ctrl, trial,
                                                {"training_iteration": t, **metrics})
        if last or action == TrialScheduler.STOP:
            self.scheduler.on_trial_complete(self.ctrl, trial, metrics)
            return False
        return True


FAMILIES = {"ours": _Ours, "optuna": _Optuna, "ray": _Ray}


def simulate(p: Problem, arm: Arm, seed: int, budget: int, workers: int = 2,
             max_trials: int | None = None) -> Run:
    """One search of `budget` epochs with `workers` trials at a time (see the module); with
    `max_trials`, `search run`'s budget instead: that many trials, whatever their epochs."""
    metrics = [m for m, _ in p.objectives]
    if max_trials is not None:
        budget = max_trials * p.max_t
    # never more trials than epochs
    driver = FAMILIES[arm.family](p, arm, seed, trials=max_trials or budget)
    rng = np.random.default_rng([seed, 7])  # the observation noise, the same for every arm
    run, events, seq, committed = Run(), [], 0, 0

    def push(now: float, handle: Any, x: dict, t: int) -> None:
        nonlocal seq, committed
        heapq.heappush(events, (now + 1, seq, handle, x, t))
        seq += 1
        committed += 1

    def start(now: float) -> None:
        if committed >= budget:  # every epoch left is taken by the running trials
            return
        if max_trials is not None and run.trials >= max_trials:
            return
        handle, x = driver.start(run.trials)
        if handle is not None:
            run.trials += 1
            push(now, handle, x, 1)

    for _ in range(workers):
        start(0.0)
    while events and run.used < budget:
        now, _, handle, x, t = heapq.heappop(events)
        run.used += 1
        observed = p.observe(x, t, rng)
        last = t >= p.max_t
        goes_on = driver.result(handle, t, observed, last)
        if last:
            run.finished.append(Finished(run.used, tuple(observed[m] for m in metrics),
                                         tuple(p.truth(x))))
        if goes_on and not last:
            push(now, handle, x, t + 1)
        else:
            start(now)
    return run


def regret(p: Problem, run: Run, used: int, reference: Any) -> float:
    """The regret after `used` epochs. One objective: how far the true value of the
    incumbent (the finished trial with the best reported value, what the study calls best)
    is from the problem's best. Two: 1 - the hypervolume of the true values of the reported
    front over the true front's (normalised between the ideal point and the median
    configuration, bench/_problems.py), so 0 is the true front."""
    from search.tune.pareto import hypervolume_2d, minimised, ranks

    done = [f for f in run.finished if f.used <= used]
    if not done:
        return math.inf
    modes = ["max" if d == "maximize" else "min" for _, d in p.objectives]
    if not p.multi:
        best = min(done, key=lambda f: minimised(f.observed, modes))
        gap = reference - best.true[0]
        return gap if modes[0] == "max" else -gap
    ideal, median, hv_true = reference
    points = [minimised(f.observed, modes) for f in done]
    front = [f for f, r in zip(done, ranks(points)) if r == 0]
    directions = tuple(d for _, d in p.objectives)
    hv = hypervolume_2d([normalised(f.true, directions, ideal, median) for f in front],
                        (1.0, 1.0))
    return 1.0 - hv / hv_true
