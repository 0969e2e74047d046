"""ASHA and the median rule for several objectives, as Ray Tune trial schedulers.

Tune's own ASHAScheduler and MedianStoppingRule compare one metric; with several objectives a
trial's epoch result is a point, and "better" is the order of search/tune/pareto.py: non-domination
rank, then crowding distance. The rules, epoch by epoch as the single-objective ones:

- `ParetoASHA`: rungs at grace_period * reduction_factor^k epochs (below max_t, as Tune's
  ASHA). A trial that reaches a rung is recorded there and goes on only when its point is in
  the best 1/reduction_factor of the points recorded at that rung so far, itself included (the
  first to arrive always goes on; a tie goes to the newcomer).
- `ParetoMedian`: from grace_period on, a trial goes on only when its point is in the better
  half of the points of the trials that reported the same epoch, itself included, once at
  least `min_samples_required` other trials did.

Which objectives count: those a result carries at that epoch. trainers.fit reports the metrics
known before training (num_params) with every epoch, so they count as they are; one measured
only when a trial ends (latency_ms) is left out of the comparison, as is any objective some
compared point lacks. A comparison with no objective that changes from epoch to epoch (only
num_params) decides nothing: the trial goes on. A stopped trial ends PRUNED in the study (the
searcher tells it, search/tune/searcher.py).
"""
from __future__ import annotations

import math
import random
from typing import Sequence

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.tune.pareto import kept, minimised
from search.lifecycle.plan import Objective

TIME_ATTR = "training_iteration"


class _ParetoScheduler(FIFOScheduler):
    """Shared: the objectives, and a result turned into a point."""

    def __init__(self, objectives: Sequence[Objective], varying: Sequence[str]):
        super().__init__()
        self.objectives = tuple(objectives)
        self.varying = frozenset(varying)  # metrics that change from epoch to epoch
        self._metric = self.objectives[0].metric  # what Tune shows as the scheduler's metric

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # the objectives came with the scheduler

    def _values(self, result: dict) -> dict[str, float]:
        """The result's objective values (each to minimise), the missing and non-numeric left
        out; a NaN or infinite value kept (it ranks last)."""
        out = {}
        for o in self.objectives:
            v = result.get(o.metric)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            out[o.metric] = minimised([v], [o.mode])[0]
        return out

    def _goes_on(self, mine: dict[str, float], others: list[dict[str, float]],
                 fraction: float) -> bool:
        columns = [o.metric for o in self.objectives
                   if o.metric in mine and all(o.metric in p for p in others)]
        if not any(c in self.varying for c in columns):
            return True
        points = [tuple(mine[c] for c in columns)] + [tuple(p[c] for c in columns)
                                                      for p in others]
        if not math.isfinite(sum(points[0])):
            return False  # a diverged objective is beaten by any finite point
        return kept(points, 0, fraction)


class ParetoASHA(_ParetoScheduler):
    """Asynchronous successive halving over several objectives (see the module docstring)."""

    def __init__(self, objectives: Sequence[Objective], varying: Sequence[str], *, max_t: int,
                 grace_period: int = 1, reduction_factor: float = 3, brackets: int = 1,
                 seed: int = 0):
        super().__init__(objectives, varying)
        if reduction_factor <= 1 or grace_period < 1 or max_t < 1 or brackets < 1:
            raise ValueError(f"ParetoASHA: needs reduction_factor > 1, grace_period >= 1, "
                             f"max_t >= 1, brackets >= 1, got ({reduction_factor=}, "
                             f"{grace_period=}, {max_t=}, {brackets=})")
        self.max_t, self.reduction_factor = int(max_t), float(reduction_factor)
        # Tune's bracket s: rungs grace * rf^(k + s) below max_t (a rung at max_t would decide
        # on trials that already ended by themselves).
        self.brackets: list[list[int]] = []
        for s in range(brackets):
            rungs, k = [], 0
            while grace_period * self.reduction_factor ** (k + s) < self.max_t:
                rungs.append(int(math.ceil(grace_period * self.reduction_factor ** (k + s))))
                k += 1
            self.brackets.append(rungs)
        self._recorded: list[dict[int, dict[str, dict[str, float]]]] = [
            {m: {} for m in rungs} for rungs in self.brackets]
        self._bracket_of: dict[str, int] = {}
        self._random = random.Random(seed)  # bracket draws repeat from run to run

    def on_trial_add(self, tune_controller, trial) -> None:
        # Tune's draw: a bracket with more rungs is likelier (weights e^(rungs - most)).
        sizes = [len(r) for r in self.brackets]
        weights = [math.exp(s - max(sizes)) for s in sizes]
        self._bracket_of[trial.trial_id] = self._random.choices(
            range(len(self.brackets)), weights)[0]

    def _at_rung(self, trial_id: str, result: dict, decide: bool) -> str:
        t = result.get(TIME_ATTR)
        b = self._bracket_of.get(trial_id)
        if b is None or not isinstance(t, (int, float)):
            return TrialScheduler.CONTINUE
        mine = self._values(result)
        for milestone in reversed(self.brackets[b]):  # the highest rung reached, once
            recorded = self._recorded[b][milestone]
            if t < milestone or trial_id in recorded:
                continue
            goes_on = (not decide or t >= self.max_t
                       or self._goes_on(mine, list(recorded.values()),
                                        1.0 / self.reduction_factor))
            if mine:
                recorded[trial_id] = mine
            return TrialScheduler.CONTINUE if goes_on else TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._at_rung(trial.trial_id, result, decide=True)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result:
            self._at_rung(trial.trial_id, result, decide=False)
        self._bracket_of.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._bracket_of.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return "Using ParetoASHA: rungs " + "; ".join(
            ", ".join(f"{m}: {len(self._recorded[b][m])}" for m in rungs)
            for b, rungs in enumerate(self.brackets))


class ParetoMedian(_ParetoScheduler):
    """The median stopping rule over several objectives (see the module docstring)."""

    def __init__(self, objectives: Sequence[Objective], varying: Sequence[str], *,
                 grace_period: int = 1, min_samples_required: int = 3):
        super().__init__(objectives, varying)
        self.grace_period = int(grace_period)
        self.min_samples_required = int(min_samples_required)
        self._points: dict[int, dict[str, dict[str, float]]] = {}  # epoch -> trial -> point

    def _record(self, trial_id: str, result: dict) -> tuple[int | None, dict[str, float]]:
        t = result.get(TIME_ATTR)
        if not isinstance(t, (int, float)):
            return None, {}
        mine = self._values(result)
        if mine:
            self._points.setdefault(int(t), {})[trial_id] = mine
        return int(t), mine

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        t, mine = self._record(trial.trial_id, result)
        if t is None or t < self.grace_period or not mine:
            return TrialScheduler.CONTINUE
        others = [p for tid, p in self._points.get(t, {}).items() if tid != trial.trial_id]
        if len(others) < self.min_samples_required:
            return TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE if self._goes_on(mine, others, 0.5) \
            else TrialScheduler.STOP

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result:
            self._record(trial.trial_id, result)

    def debug_string(self) -> str:
        return f"Using ParetoMedian: {len(self._points)} epochs recorded"
