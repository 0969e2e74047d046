"""`search run` and `search resume` as library functions: Ray Tune + the Optuna study.

A run is one Tune experiment in a run folder of the output folder (search/runs.py) over the
space's study (search/study.py), which a later run of the same space continues.
"""
from __future__ import annotations

import os
import pickle
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from search import preflight
from search import shipping
from search import study as studies
from search.cluster import ray_session
from search.disk import DiskBudget
from search.errors import UserError
from search.plan import (budget_of, concurrency, field_of, max_epochs, objectives_of,
                         resources_of)
from search.progress import Progress, TargetStopper
from search.pruners import build_scheduler, holding_note, pruner_info, started_at_once
from search.runs import find_run, new_run_id, output_dir, read_run_file, write_run_file
from search.samplers import build_sampler
from search.searcher import StudySearcher, conclude, error_reason, trial_dirname
from search.trainable import DEFAULT_FIT, TrialPlan, make_trainable, resolve_fit
from search.warmstart import continue_study, record_run

@dataclass(frozen=True)
class RunOptions:
    output: str | None = None     # folder of the study and the runs; default ./runs/<name>
    storage: str | None = None    # study database URL; default $SEARCH_STORAGE or study.db
    new: bool = False             # delete the study of this name first
    retries: int = 1              # Tune retries of a trial that raised an unexpected error
    address: str | None = None    # join this Ray cluster instead of starting one
    fit: str = DEFAULT_FIT        # the training function
    cpus: int | None = None       # size of a local Ray; default: the machine
    live: bool | None = None      # live status line; default: when stdout is a terminal
    tracking_uri: str | None = None  # MLflow; default $MLFLOW_TRACKING_URI, tracking.uri, ...
    warm_start: int = 3           # space changed since the last run: enqueue its k best configs


@dataclass
class Outcome:
    run_id: str
    experiment_dir: Path
    study_name: str
    storage_url: str
    counts: dict[str, int]
    objectives: tuple = ()
    interrupted: bool = False
    best: list = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        ended = self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)
        return 1 if ended == 0 and self.counts.get("FAIL", 0) else 0


def _plan(space: Any, fit: str, exp_dir: Path) -> tuple[TrialPlan, Any]:
    objectives = objectives_of(space)
    plan = TrialPlan(objectives, budget_of(space), resources_of(space), fit, str(exp_dir))
    if fit != DEFAULT_FIT:  # ours needs no check, nor torch's 3 s import on the driver
        resolve_fit(fit)  # a bad --fit is the user's mistake, said once on the driver
    scheduler = build_scheduler(space, objectives[0], max_epochs(space, plan.budget))
    return plan, scheduler


def run_search(space: Any, options: RunOptions = RunOptions(),
               stream: TextIO | None = None) -> Outcome:
    """Run the space's search: a new Tune experiment over the (new or continued) study."""
    import optuna
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the run prints its own lines

    preflight.check_data(space)  # missing data files: one line now, before Ray or any folder
    output = output_dir(space.name, options.output)
    run_id = new_run_id(output)
    exp_dir = output / run_id
    plan, scheduler = _plan(space, options.fit, exp_dir)
    shipped = shipping.runtime_env(space, options.fit, options.address)
    info = pruner_info(space)
    url = studies.storage_url(options.storage, output)
    storage = studies.open_storage(url)
    directions = [o.direction for o in plan.objectives]
    if info.uses_searcher:
        build_sampler(space, len(plan.objectives))  # unknown names and bad grids fail here
    warm = continue_study(storage, space, directions, [o.metric for o in plan.objectives],
                          best=_warm_k(space, plan, info.uses_searcher, options.warm_start),
                          new=options.new)
    study = warm.study
    for line in warm.lines():
        print(line, file=stream or sys.stdout)
    run_info = {"run_id": run_id, "space_name": space.name, "study_name": study.study_name,
                "storage_url": url, "options": asdict(options), "pid": os.getpid(),
                "host": socket.gethostname(), "started": time.time(), "state": "running",
                "previous_run": warm.previous, "warm_start": warm.record()}
    write_run_file(exp_dir, run_info)
    (exp_dir / "space.pkl").write_bytes(pickle.dumps(space))
    if hasattr(space, "to_yaml"):
        (exp_dir / "space.yaml").write_text(space.to_yaml())

    with ray_session(options.address, options.cpus, runtime_env=shipped) as cluster:
        slots = concurrency(plan.resources, cluster)
        max_t = max_epochs(space, plan.budget)
        started = started_at_once(space, max_t, slots,
                                  capped=plan.resources.max_concurrent is not None)
        note = holding_note(space, max_t, started)
        if note:
            print(note, file=stream or sys.stdout)
        searcher, label, param_space, samples, callbacks = _how_to_search(
            space, plan, info.uses_searcher, storage_url=url, study_name=study.study_name,
            run_id=run_id, objectives=plan.objectives, experiment_dir=str(exp_dir))
        stopper = None if plan.budget.target is None else \
            TargetStopper(plan.objectives[0], plan.budget.target)
        tracking = _tracking(space, options, output, run_id, study, label, warm.previous)
        if tracking is not None:
            callbacks.append(tracking)
        run_info["mlflow_run_id"] = tracking.tracker.parent_id if tracking is not None else None
        write_run_file(exp_dir, run_info)
        record_run(study, {k: run_info[k] for k in ("run_id", "mlflow_run_id", "host",
                                                     "started")} | {"output": str(output)})
        callbacks += [CSVLoggerCallback(), JsonLoggerCallback()]
        if info.uses_searcher:  # after tracking, which may still read a finished trial's files
            callbacks.append(DiskBudget())
        callbacks.insert(0, Progress(plan.budget.trials, plan.objectives[0],
                                     plan.budget.time_limit, label, options.live, stream,
                                     str(exp_dir)))
        tuner = tune.Tuner(
            make_trainable(space, plan), param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler, num_samples=samples,
                max_concurrent_trials=started, time_budget_s=plan.budget.time_limit,
                reuse_actors=True, trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name=run_id, storage_path=str(output), verbose=0, stop=stopper,
                callbacks=callbacks, log_to_file=True,
                failure_config=tune.FailureConfig(max_failures=options.retries),
                # PBT copies other trials' checkpoints: it needs them all kept
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1 if info.uses_searcher else None)))
        return _finish(tuner, study, plan, run_info, exp_dir)


def _how_to_search(space: Any, plan: TrialPlan, uses_searcher: bool, **common):
    """(searcher, trial labeller, param_space, num_samples, callbacks): the study's searcher
    drawing budget.trials trials, or for PBT a population drawn up front and a recorder that
    writes its members into the study."""
    from ray import tune

    if uses_searcher:
        searcher = StudySearcher(space, max_trials=plan.budget.trials, **common)
        return searcher, searcher.number_of, None, plan.budget.trials, []
    from search.pbt import StudyRecorder, initial_population

    population = initial_population(space, plan.budget.trials, field_of(space, "seed"))
    return (None, None, {"params": tune.grid_search(population)}, 1,
            [StudyRecorder(space, **common)])


def _warm_k(space: Any, plan: TrialPlan, uses_searcher: bool, k: int) -> int:
    """How many earlier best configs a changed space enqueues: none for PBT (its population is
    drawn up front) and grids (their points are fixed), at most the run's budget."""
    if k < 0:
        raise UserError(f"--warm-start: must be >= 0, got {k}")
    grid = field_of(field_of(space, "sampler", {}), "name") == "grid"
    return 0 if not uses_searcher or grid else min(k, plan.budget.trials)


def _tracking(space: Any, options: RunOptions, output: Path, run_id: str, study, label,
              previous: dict | None = None):
    """The MLflow callback when the space's tracking is enabled (search/tracking/); its parent
    run links to the previous run of the study."""
    if not (field_of(space, "tracking", {}) or {}).get("enabled", True):
        return None
    from search.tracking.factory import make_tracking

    links = {"search.study": study.study_name}
    if previous:
        links["search.previous_run_id"] = previous.get("run_id")
        links["search.previous_run"] = previous.get("mlflow_run_id")
    return make_tracking(space, output_dir=output, run_id=run_id,
                         space_path=getattr(space, "source", None),
                         tracking_uri=options.tracking_uri, study=study, trial_number=label,
                         tags={k: v for k, v in links.items() if v})


def _target_reached(trials: list, plan: TrialPlan) -> bool:
    target, first = plan.budget.target, plan.objectives[0]
    return target is not None and any(
        t.state.name == "COMPLETE" and (t.values[0] == target or first.better(t.values[0], target))
        for t in trials)


def _finish(tuner, study, plan: TrialPlan, run_info: dict, exp_dir: Path) -> Outcome:
    """Fit, then settle the study: nothing of a run that ended may stay RUNNING."""
    started = time.monotonic()
    results = tuner.fit()
    unfinished = len(results) - results.num_terminated - results.num_errors
    # Trials Tune ended without telling the searcher (the target or the time budget stopped
    # the whole run) are told from their last result, as PRUNED.
    reconcile(study, run_info["run_id"], exp_dir, plan.objectives, detach=False)
    run_trials = studies.of_run(study.get_trials(deepcopy=False), run_info["run_id"])
    ended_early = _target_reached(run_trials, plan) or (
        plan.budget.time_limit is not None
        and time.monotonic() - started >= plan.budget.time_limit) or (
        hasattr(study.sampler, "is_exhausted") and study.sampler.is_exhausted(study))
    interrupted = unfinished > 0 or (len(run_trials) < plan.budget.trials and not ended_early)
    if not interrupted:
        studies.fail_leftovers(study, run_info["run_id"],
                               "the run ended before this trial reported how it ended")
    write_run_file(exp_dir, {**run_info, "state": "interrupted" if interrupted else "finished",
                             "ended": time.time()})
    counts = studies.counts(studies.of_run(study.get_trials(deepcopy=False),
                                           run_info["run_id"]))
    return Outcome(run_info["run_id"], exp_dir, run_info["study_name"],
                   run_info["storage_url"], counts, plan.objectives, interrupted,
                   studies.best_trials(study))


def reconcile(study, run_id: str, exp_dir: Path, objectives,
              detach: bool = True) -> dict[str, int]:
    """Settle the study's RUNNING trials of a run against Tune's saved state (after a run, or
    before resuming one whose driver died). Ended in Tune → told from Tune's last result;
    unfinished in Tune → left RUNNING for Tune to resume; unknown to Tune (created after its
    last save) → with `detach`, marked so that the searcher runs their parameters again under
    a new Tune trial."""
    from optuna.trial import TrialState
    from ray.tune import ExperimentAnalysis

    try:
        tune_trials = {t.trial_id: t for t in ExperimentAnalysis(str(exp_dir)).trials}
    except Exception:  # no experiment state was saved before the driver died
        tune_trials = {}
    done = {"told": 0, "resumed": 0, "detached": 0}
    for t in studies.of_run(study.get_trials(deepcopy=False), run_id):
        if t.state != TrialState.RUNNING:
            continue
        tune_id = t.user_attrs.get("tune_trial_id")
        tt = tune_trials.get(tune_id)
        if tt is None:
            if not detach:
                continue
            trial = studies.live(study, t.number)
            trial.set_user_attr("tune_trial_id", "")
            trial.set_user_attr("orphan_of", tune_id)
            done["detached"] += 1
        elif tt.status in ("TERMINATED", "ERROR"):
            reason = error_reason(str(exp_dir), tune_id) if tt.status == "ERROR" else None
            conclude(study, t.number, objectives, tt.last_result, reason)
            done["told"] += 1
        else:
            done["resumed"] += 1
    return done


def resume_search(output: Path, options: RunOptions = RunOptions(),
                  stream: TextIO | None = None) -> Outcome:
    """Continue the newest unfinished run in `output` (after Ctrl-C or a killed driver)."""
    from ray import tune

    exp_dir = find_run(output)
    run_info = read_run_file(exp_dir)
    space = pickle.loads((exp_dir / "space.pkl").read_bytes())
    preflight.check_data(space)  # the files may have moved since the run started
    saved = run_info.get("options", {})
    fit = saved.get("fit", DEFAULT_FIT)
    plan, _ = _plan(space, fit, exp_dir)
    address = options.address or saved.get("address")
    shipped = shipping.runtime_env(space, fit, address)
    storage = studies.open_storage(run_info["storage_url"])
    study = studies.load_study(storage, run_info["study_name"])
    settled = reconcile(study, run_info["run_id"], exp_dir, plan.objectives)
    print(f"resuming {exp_dir.name}: of the trials left running, {settled['told']} ended "
          f"before the stop and are now recorded, {settled['resumed']} continue from their "
          f"checkpoints, {settled['detached']} unknown to Tune run again",
          file=stream or sys.stdout)
    run_info = {**run_info, "pid": os.getpid(), "host": socket.gethostname(),
                "state": "running", "resumed": time.time(), "settled": settled}
    write_run_file(exp_dir, run_info)
    with ray_session(address, options.cpus or saved.get("cpus"), runtime_env=shipped):
        if not tune.Tuner.can_restore(str(exp_dir)):
            raise UserError(f"resume: {exp_dir} has no Tune state to resume from")
        tuner = tune.Tuner.restore(str(exp_dir), trainable=make_trainable(space, plan),
                                   resume_unfinished=True, resume_errored=False)
        return _finish(tuner, study, plan, run_info, exp_dir)


