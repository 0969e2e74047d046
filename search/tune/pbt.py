"""Population-based training: its population, and its trials written into the Optuna study.

PBT cannot share a run with a searcher, so the first population is drawn from the space by the
space's own define-by-run on a throwaway in-memory study (random, seeded), and each member is
written into the persistent study when it ends, with its final (mutated) parameters, the
objective values it reported each epoch and how it ended.

A member that exploits another continues from that member's checkpoint, so its epochs jump
(it reported epoch 1, copied a member at epoch 2, then reports epoch 3). Its intermediate
values are its own reports and, for the epochs it skipped, the values of the model it carries
on (the trainer's history of a finished member, which holds the epochs before the copy), so a
finished member has a value at every epoch.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from ray.tune import Callback

from search.studies import study as studies
from search.lifecycle.plan import Objective
from search.tune.searcher import FAIL_KEY, FINAL_PREFIX, FINISHED_KEY, RECORDED, error_reason
from search.tune.trainable import HISTORY_FILE


def checkpoints_to_keep(space: Any) -> int:
    """Checkpoints kept per member. Synchronous PBT lets no member pass the next perturbation
    epoch before every member reached it, and a member that copied another resumes before that
    epoch: the copied checkpoint (taken at the last perturbation) is at most
    perturbation_interval checkpoints old when it is read."""
    return space.pruner.perturbation_interval + 1


def initial_population(space: Any, size: int, seed: int | None) -> list[dict]:
    """`size` parameter sets drawn at random from the space."""
    import optuna

    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(size):
        trial = scratch.ask()
        space.define_by_run(trial)
        out.append(dict(trial.params))
    return out


class StudyRecorder(Callback):
    """Adds every ended PBT member to the study as one trial (COMPLETE, PRUNED or FAIL)."""

    def __init__(self, space: Any, *, storage_url: str, study_name: str, run_id: str,
                 objectives: Sequence[Objective], experiment_dir: str | None = None):
        self.space = space
        self.storage_url = storage_url
        self.study_name = study_name
        self.run_id = run_id
        self.objectives = tuple(objectives)
        self.experiment_dir = experiment_dir
        self.curves: dict[str, dict[int, float]] = {}

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info):
        value = result.get(self.objectives[0].metric)
        step = result.get("training_iteration")
        if isinstance(value, (int, float)) and step is not None:
            self.curves.setdefault(trial.trial_id, {}).setdefault(int(step), float(value))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info):
        self._record(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info):
        self._record(trial, error_reason(self.experiment_dir, trial.trial_id))

    def _record(self, trial, error_text: str | None) -> None:
        import optuna
        from optuna.trial import TrialState

        storage = studies.open_storage(self.storage_url)
        study = studies.load_study(storage, self.study_name)
        if any(t.user_attrs.get(studies.TUNE_TRIAL_ID) == trial.trial_id
               for t in studies.of_run(study.get_trials(deepcopy=False), self.run_id)):
            return  # recorded before a restart
        result = trial.last_result or {}
        attrs = {studies.TUNE_TRIAL_ID: trial.trial_id, studies.RUN_ID: self.run_id, "pbt": True}
        values = None
        reason = error_text or result.get(FAIL_KEY)
        if reason:
            state, attrs[studies.FAIL_REASON] = TrialState.FAIL, str(reason)
        elif result.get(FINISHED_KEY):
            state = TrialState.COMPLETE
            values = [result.get(FINAL_PREFIX + o.metric) for o in self.objectives]
            attrs.update({k: result[k] for k in RECORDED if result.get(k) is not None})
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                state, values = TrialState.FAIL, None
                attrs[studies.FAIL_REASON] = "the objective is not finite at the selected epoch"
        else:
            state = TrialState.PRUNED
        params = dict(trial.config.get("params", {}))
        dists = self.space.distributions() or {}
        curve = self._curve(trial.trial_id) if len(self.objectives) == 1 else None
        if state == TrialState.PRUNED and curve:
            values = [curve[max(curve)]]
        study.add_trial(optuna.trial.create_trial(
            state=state, values=values, params=params,
            distributions={k: dists[k] for k in params if k in dists},
            user_attrs=attrs, intermediate_values=curve or None))

    def _curve(self, trial_id: str) -> dict[int, float] | None:
        """The member's own reports, gaps filled from the history of the model it ended with."""
        curve = dict(self.curves.get(trial_id, {}))
        path = Path(self.experiment_dir or "", f"trial_{trial_id}", HISTORY_FILE)
        try:
            history = json.loads(path.read_text()) if self.experiment_dir else []
        except (OSError, ValueError):
            history = []  # not finished (or not written): its own reports only
        metric = self.objectives[0].metric
        for row in history:
            value = row.get(metric) if isinstance(row, dict) else None
            if isinstance(value, (int, float)) and isinstance(row.get("epoch"), int):
                curve.setdefault(row["epoch"], float(value))
        return dict(sorted(curve.items())) or None
