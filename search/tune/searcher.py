"""A Ray Tune Searcher over a persistent Optuna study, with the trial states told right.

Ray's own OptunaSearch tells a trial that a scheduler stopped as COMPLETE with its last,
partial-budget value, which feeds the sampler low-fidelity results as if they were final. This
searcher uses Optuna's ask/tell with the space's define-by-run function and tells:

- COMPLETE, with the objective at the trial's *selected* epoch (the epoch whose model the trainer
  keeps and tests, FitResult.best_epoch), only when the trial finished by itself (its last
  result carries `trial_finished`);
- PRUNED, keeping the intermediate values reported every epoch, when a scheduler (or the time
  budget, or the target) stopped it; Optuna then ranks it by its last intermediate value;
- FAIL with the user attribute `fail_reason` when it failed;
- PRUNED with the user attribute `out_of_memory` (the reason) when it ran out of memory: TPE
  ranks a pruned trial without epochs below every trial that reported one, so the sampler
  moves away from configurations that do not fit (a FAIL would be ignored by every sampler).

The Tune trial id ↔ Optuna number mapping lives in the study (user attrs `tune_trial_id`,
`run_id`), so a restored searcher rebuilds it from the database, not from memory.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from ray.tune.search import Searcher

from search.studies import study as studies
from search.lifecycle.plan import Objective
from search.studies.study import FIRST_TUNE_ID, RESUME_FROM  # noqa: F401 - re-exported

from search.tune.keys import (FAIL_KEY, FINAL_PREFIX, FINISHED_KEY, HELD_KEY,  # noqa: F401
                              MISTAKE_KEY, NODE_KEY, OOM_KEY)
RECORDED = (studies.TEST_ACCURACY, "num_params", "selected_epoch", studies.EPOCHS_RUN,
            studies.TRIAL_DIR, "split", "folds", "fold_val_accuracy", "device", "gpu_peak_mb",
            studies.HORIZON, studies.SEEDS)


# A run whose first trials all crashed with one and the same error (an exception the trainer
# does not know, from the training code itself: a typo, a missing key; or a broken report()
# contract, MISTAKE_KEY) stops drawing trials: every further trial would crash the same way.
# Known failures (a configuration the trainer refuses, a diverged loss, out of memory) depend
# on the sampled values and never stop a run.
CRASHES_TO_STOP = 3


def trial_dirname(trial) -> str:
    """Tune trial folders named by id alone: short, and findable from the id."""
    return f"trial_{trial.trial_id}"


def error_reason(experiment_dir: str | None, tune_id: str) -> str:
    """Why a trial errored, from the line the trainable left beside its Tune folder."""
    if experiment_dir:
        path = Path(experiment_dir, f"trial_{tune_id}", "fail_reason.txt")
        if path.is_file():
            return path.read_text().strip()
    return (f"Ray could not run Tune trial {tune_id} (an error outside training, e.g. its "
            "worker died or its checkpoint was missing); see Tune's error.txt for the trial")


def epoch_rows(result: dict | None) -> list[dict]:
    """The epochs a result tells of, in order: those held since the previous result (each a
    report of its own: `epoch`, `training_iteration`, the metrics), then the result itself."""
    if not result:
        return []
    held = result.get(HELD_KEY)
    rows = [r for r in held if isinstance(r, dict)] if isinstance(held, list) else []
    return rows + [result]


def record_epochs(trial, result: dict | None, metric: str, known) -> list[int]:
    """Report `metric` of each epoch of `result` (epoch_rows) not in `known` (the steps the
    study has) to the live Optuna `trial`; the steps reported."""
    done = []
    for row in epoch_rows(result):
        value, step = row.get(metric), row.get("training_iteration")
        if isinstance(step, bool) or not isinstance(step, int) or step in known \
                or step in done or isinstance(value, bool) \
                or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        trial.report(float(value), step)
        done.append(step)
    return done


def unfit_objective(result: dict, objectives: Sequence[Objective]) -> str | None:
    """Why a finished trial's result cannot be told COMPLETE (an objective that is missing, NaN
    or infinite at the selected epoch), else None. The live view and the study both ask this,
    so the console never calls COMPLETE what the study records as FAIL."""
    for o in objectives:
        v = result.get(FINAL_PREFIX + o.metric)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"objective {o.metric} is {v} at the selected epoch"
    return None


def seed_attrs(result: dict, objectives: Sequence[Objective]) -> dict:
    """With budget.seeds > 1 (search/tune/seeds.py): each objective's std over the seeds, its
    plain mean when penalised, and the seeds' values, as the study's user attrs
    `<metric>_std`, `<metric>_mean`, `<metric>_seeds`."""
    out = {}
    for o in objectives:
        for key, attr in ((FINAL_PREFIX + o.metric + "_std", o.metric + "_std"),
                          (FINAL_PREFIX + o.metric + "_mean", o.metric + "_mean"),
                          (o.metric + "_seeds", o.metric + "_seeds")):
            if result.get(key) is not None:
                out[attr] = result[key]
    return out


def conclude(study, number: int, objectives: Sequence[Objective], result: dict | None,
             error_text: str | None = None) -> str:
    """Tell the study how trial `number` ended, from its last Tune result. Returns the state
    told. A trial already finished in the study (told before a restart) is left alone."""
    from optuna.trial import TrialState

    frozen = study.get_trials(deepcopy=False)[number]
    if frozen.state.is_finished():
        return frozen.state.name
    result = result or {}
    reason = error_text or result.get(FAIL_KEY)
    if reason:
        studies.fail(study, number, str(reason))
        return "FAIL"
    trial = studies.live(study, number)
    if len(objectives) == 1:  # epochs the searcher never saw (told from the trial's files)
        record_epochs(trial, result, objectives[0].metric, frozen.intermediate_values)
    if result.get(NODE_KEY):
        trial.set_user_attr(NODE_KEY, result[NODE_KEY])
    if result.get(OOM_KEY):
        trial.set_user_attr(OOM_KEY, str(result[OOM_KEY])[:1000])
        study.tell(number, state=TrialState.PRUNED)
        return "PRUNED"
    if result.get(FINISHED_KEY):
        values = [result.get(FINAL_PREFIX + o.metric) for o in objectives]
        bad = unfit_objective(result, objectives)
        if bad:
            studies.fail(study, number, bad)
            return "FAIL"
        for key in RECORDED:
            if result.get(key) is not None:
                trial.set_user_attr(key, result[key])
        for key, value in seed_attrs(result, objectives).items():
            trial.set_user_attr(key, value)
        study.tell(number, [float(v) for v in values], state=TrialState.COMPLETE)
        return "COMPLETE"
    trial.set_user_attr(studies.STOPPED_AT_EPOCH, result.get("training_iteration"))
    study.tell(number, state=TrialState.PRUNED)
    return "PRUNED"


class StudySearcher(Searcher):
    """Suggests `{"params": {...}}` from an Optuna study and tells it each trial's end.

    Picklable: Tune pickles the searcher with the Tuner and at every experiment checkpoint
    (never read back by us: `search resume` starts from the study); the open study and live
    Optuna trials are dropped and reopened from `storage_url`.
    """

    def __init__(self, space: Any, *, storage_url: str, study_name: str, run_id: str,
                 objectives: Sequence[Objective], max_trials: int,
                 experiment_dir: str | None = None):
        multi = len(objectives) > 1
        metrics = [o.metric for o in objectives]
        modes = [o.mode for o in objectives]
        super().__init__(metric=metrics if multi else metrics[0],
                         mode=modes if multi else modes[0])
        self.space = space
        self.storage_url = storage_url
        self.study_name = study_name
        self.run_id = run_id
        self.objectives = tuple(objectives)
        self.max_trials = max_trials
        self.experiment_dir = experiment_dir
        self._study = None
        self._numbers: dict[str, int] = {}    # Tune trial id -> Optuna trial number
        self._steps: dict[int, set] = {}      # steps already reported per trial number
        self._live: dict[int, Any] = {}       # Optuna Trial objects of running trials
        self._orphans: list[int] = []         # RUNNING trials a resume left to run again
        self._ended: set[int] = set()         # trial numbers finished in the study
        self._last: dict[str, dict] = {}      # Tune trial id -> its latest result
        self._crashes: list[str] = []         # why this session's crashed trials crashed
        self._ended_well = False              # a trial of this session completed or pruned
        self.gave_up: str | None = None       # the crash that stopped the run (see above)

    # -- the study, opened lazily (also after unpickling) ---------------------------------------
    @property
    def study(self):
        if self._study is None:
            from search.studies.samplers import build_sampler

            storage = studies.open_storage(self.storage_url)
            n_existing = len(storage.get_all_trials(
                storage.get_study_id_from_name(self.study_name), deepcopy=False))
            sampler = build_sampler(self.space, len(self.objectives), n_existing)
            self._study = studies.load_study(storage, self.study_name, sampler=sampler)
            self._rebuild()
        return self._study

    def _rebuild(self) -> None:
        """The id mapping and reported steps, from the study's user attributes."""
        from optuna.trial import TrialState

        self._numbers, self._steps, self._live, self._orphans = {}, {}, {}, []
        self._ended = set()
        for t in studies.of_run(self._study.get_trials(deepcopy=False), self.run_id):
            if t.state.is_finished():
                self._ended.add(t.number)
            tune_id = t.user_attrs.get(studies.TUNE_TRIAL_ID)
            if tune_id:
                self._numbers[tune_id] = t.number
                self._steps[t.number] = set(t.intermediate_values)
            elif tune_id == "" and t.state == TrialState.RUNNING:
                self._orphans.append(t.number)

    def _trial(self, number: int):
        if number not in self._live:
            self._live[number] = studies.live(self.study, number)
        return self._live[number]

    def number_of(self, tune_id: str) -> int | None:
        self.study  # noqa: B018 - opening rebuilds the mapping
        return self._numbers.get(tune_id)

    # -- Searcher interface --------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | None:
        study = self.study
        sampler = study.sampler
        trial = self._adopt_orphan()  # before all else: a killed driver's trials finish first
        extra = {}
        if trial is not None:
            attrs = self.study.get_trials(deepcopy=False)[trial.number].user_attrs
            if attrs.get(RESUME_FROM):
                extra[RESUME_FROM] = attrs[RESUME_FROM]
            if attrs.get(studies.EXTENDS) is not None:  # still spared by the scheduler
                extra["extends"] = attrs[studies.EXTENDS]
        else:
            if hasattr(sampler, "is_exhausted") and sampler.is_exhausted(study):
                return Searcher.FINISHED  # a grid with every point taken
            if self.gave_up is not None or self._same_crash():
                self.gave_up = self._crashes[-1]
                return Searcher.FINISHED
            # The run's budget is counted in the study, not in Tune's saved counter: after a
            # killed driver, trials Tune never saved still count.
            if len(self._numbers) >= self.max_trials:
                return Searcher.FINISHED
            trial = self._ask()
            extra = self._continuation(trial)
        trial.set_user_attr(studies.TUNE_TRIAL_ID, trial_id)
        trial.set_user_attr(studies.RUN_ID, self.run_id)
        self._numbers[trial_id] = trial.number
        self._steps.setdefault(trial.number, set())
        self._live[trial.number] = trial
        return {"params": dict(trial.params), **extra}

    def _same_crash(self) -> bool:
        """Whether the session's first CRASHES_TO_STOP trials to end all crashed with one
        error and none completed or was pruned (see CRASHES_TO_STOP)."""
        return not self._ended_well and len(self._crashes) >= CRASHES_TO_STOP \
            and len(set(self._crashes)) == 1

    def _continuation(self, trial) -> dict:
        """A trial `search run --extend` enqueued to continue a finished one: its checkpoint
        for the trainable, the trial it continues for the scheduler (search/lifecycle/
        extend.py), and that trial's curve copied in, so the study holds the whole curve."""
        attrs = trial.user_attrs
        if attrs.get(studies.EXTENDS) is None:
            return {}
        original = self.study.get_trials(deepcopy=False)[int(attrs[studies.EXTENDS])]
        if len(self.objectives) == 1:
            for step, value in sorted(original.intermediate_values.items()):
                trial.report(value, step)
            self._steps[trial.number] = set(original.intermediate_values)
        return {RESUME_FROM: attrs.get(RESUME_FROM), "extends": original.number}

    def _ask(self, attempts: int = 20):
        """A new trial whose sampled config the space accepts. A config that breaks one of the
        space's cross-field rules is recorded as FAIL (the sampler learns to avoid it) and
        another is asked for."""
        from search.errors import UserError

        last = ""
        for _ in range(attempts):
            trial = studies.ask(self.study, self.run_id)
            try:
                self.space.define_by_run(trial)
                return trial
            except UserError as err:
                last = str(err)
                studies.fail(self.study, trial.number, f"invalid config: {last}")
        raise UserError(f"space {self.study_name}: {attempts} sampled configs in a row broke the "
                        f"space's rules (last: {last}); narrow the ranges that conflict")

    def _adopt_orphan(self):
        """A RUNNING trial of this run that lost its Tune trial when the driver died (the
        resume marked it with an empty tune_trial_id): run its parameters again under a new
        Tune trial instead of leaving it RUNNING or wasting its number."""
        from optuna.trial import TrialState

        from search.errors import UserError

        # Orphans exist only when `search resume` marked them before this searcher opened the
        # study: the list made then, not a scan of every trial per suggestion.
        self.study  # noqa: B018 - opening finds them
        while self._orphans:
            t = self.study.get_trials(deepcopy=False)[self._orphans.pop(0)]
            if t.state == TrialState.RUNNING and t.user_attrs.get(studies.TUNE_TRIAL_ID) == "":
                trial = self._trial(t.number)
                try:  # a driver killed while sampling left it with only some of its params
                    self.space.define_by_run(trial)
                except UserError as err:
                    studies.fail(self.study, t.number, f"invalid config: {err}")
                    continue
                self._steps[t.number] = set(t.intermediate_values)
                return trial
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._last[trial_id] = result
        if len(self.objectives) > 1:  # Optuna keeps no intermediate values for several
            return
        number = self.number_of(trial_id)
        if number is None or number in self._ended:  # told before a restart: known here
            return
        steps = self._steps.setdefault(number, set())
        steps.update(record_epochs(self._trial(number), result, self.objectives[0].metric,
                                   steps))

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        number = self.number_of(trial_id)
        if number is None:
            return
        if result:  # Tune skips on_trial_result for the result on which a scheduler stops
            self.on_trial_result(trial_id, result)
        else:  # a PAUSED trial stopped (HyperBand) comes without one: it ended on its latest
            result = self._last.get(trial_id)
        self._last.pop(trial_id, None)
        reason = error_reason(self.experiment_dir, trial_id) if error else None
        state = conclude(self.study, number, self.objectives, result, reason)
        if error or (result or {}).get(MISTAKE_KEY):
            self._crashes.append(reason or str((result or {}).get(FAIL_KEY)))
        elif state in ("COMPLETE", "PRUNED"):
            self._ended_well = True
        self._ended.add(number)
        self._live.pop(number, None)

    # -- persistence ---------------------------------------------------------------------------
    # The state is JSON whatever name Tune gives the file: nothing we write is unpickled.
    def save(self, checkpoint_path: str) -> None:
        state = {"storage_url": self.storage_url, "study_name": self.study_name,
                 "run_id": self.run_id, "experiment_dir": self.experiment_dir}
        with open(checkpoint_path, "w") as f:
            json.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            state = json.load(f)
        self.storage_url = state["storage_url"]
        self.study_name = state["study_name"]
        self.run_id = state["run_id"]
        self.experiment_dir = state.get("experiment_dir") or self.experiment_dir
        self._study = None  # reopened (and the mapping rebuilt) on first use

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_study=None, _numbers={}, _steps={}, _live={}, _last={}, _orphans=[],
                     _ended=set(), _crashes=[], _ended_well=False, gave_up=None)
        return state

    def __setstate__(self, state: dict) -> None:
        # pickled before these existed
        self.__dict__.update({"_last": {}, "_orphans": [], "_ended": set(), "_crashes": [],
                              "_ended_well": False, "gave_up": None, **state})
