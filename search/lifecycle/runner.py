"""`search run` and `search resume` as library functions: Ray Tune + the Optuna study.

A run is one Tune experiment in a run folder of the output folder (search/lifecycle/runs.py) over the
space's study (search/studies/study.py), which a later run of the same space continues.

Resuming reads no Tune state (Tune's tuner.pkl and experiment state are pickles, and nothing
in an output folder is unpickled by us): the study is the source of truth. Its ended trials
stay; a trial the dead driver left RUNNING is told from the files its trial folder holds when
it had ended (search_result.json, result.json), else run again under a fresh Tune experiment in
the same run folder, with its number and parameters, from its last checkpoint when it saved one.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from search.cluster import gpus, shipping
from search.lifecycle import extend, precheck, preflight
from search.studies import study as studies
from search.cluster.connect import ray_session
from search.tune.disk import DiskBudget
from search.errors import UserError
from search.lifecycle.plan import concurrency
from search.tune.pbt import checkpoints_to_keep
from search.tune.progress import Progress, TargetStopper
from search.tune.shared_data import share_data
from search.tune.pruners import (build_scheduler, decision_epochs, holding_note, pruner_info,
                                started_at_once)
from search.lifecycle.runs import (find_run, new_run_id, output_dir, read_run_file, run_space, runs_of,
                         write_run_file, write_space)
from search.studies.samplers import build_sampler
from search.tune.searcher import (FAIL_KEY, FINAL_PREFIX, FINISHED_KEY, FIRST_TUNE_ID, RESUME_FROM,
                             StudySearcher, conclude, trial_dirname)
from search.tune.trainable import DEFAULT_FIT, RESULT_FILE, TrialPlan, make_trainable
from search.lifecycle.usercode import check_user_code, resolve_fit, space_fit
from search.urls import secret_free
from search.studies.warmstart import continue_study, record_run

@dataclass(frozen=True)
class RunOptions:
    output: str | None = None     # folder of the study and the runs; default ./runs/<name>
    storage: str | None = None    # study database URL; default $SEARCH_STORAGE or study.db
    new: bool = False             # delete the study of this name first
    retries: int = 1              # Tune retries of a trial that raised an unexpected error
    address: str | None = None    # join this Ray cluster instead of starting one
    fit: str | None = None        # the training function; default the space's fit:, else ours
    cpus: int | None = None       # size of a local Ray; default: the machine
    live: bool | None = None      # live status line; default: when stdout is a terminal
    tracking_uri: str | None = None  # MLflow; default $MLFLOW_TRACKING_URI, tracking.uri, ...
    warm_start: int = 3           # space changed since the last run: enqueue its k best configs
    stages: bool = True           # the space's stages run after the search (not --no-stages)
    extend: bool = False          # continue the best finished trials to a longer horizon


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
    gave_up: str | None = None  # the one error every trial crashed with (searcher.py)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        ended = self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)
        return 1 if ended == 0 and self.counts.get("FAIL", 0) else 0


def _plan(space: Any, fit: str, exp_dir: Path) -> tuple[TrialPlan, Any]:
    objectives = space.objectives
    plan = TrialPlan(objectives, space.budget, space.resources, fit, str(exp_dir))
    if fit != DEFAULT_FIT:  # ours needs no check, nor torch's 3 s import on the driver
        resolve_fit(fit)  # a bad --fit is the user's mistake, said once on the driver
    scheduler = build_scheduler(space, objectives, plan.budget.max_epochs)
    # A target or a time budget stops trials at any epoch, with nothing left to report their
    # held epochs: those runs report every epoch.
    if plan.budget.target is None and plan.budget.time_limit is None:
        plan = replace(plan, report_at=decision_epochs(scheduler, plan.budget.max_epochs))
    return plan, scheduler


def run_search(space: Any, options: RunOptions = RunOptions(),
               stream: TextIO | None = None) -> Outcome:
    """Run the space's search: a new Tune experiment over the (new or continued) study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the run prints its own lines

    precheck.check_options(options)
    preflight.check_data(space)  # missing data files: one line now, before Ray or any folder
    check_user_code(space, options.fit)  # the fit function and the factories' arguments
    options = replace(options, fit=space_fit(space, options.fit))
    preflight.check_devices(space)
    loaded = None
    if options.fit == DEFAULT_FIT:  # a factory's mistake: one line now, not in every trial
        loaded = (preflight.check_user_code(space) or {}).get("data")
    output = output_dir(space.name, options.output)
    url = precheck.check_run(space, options)  # before anything is created
    run_id = new_run_id(output)
    exp_dir = output / run_id
    plan, scheduler = _plan(space, options.fit, exp_dir)
    if options.extend:
        extend.keep_share(space)  # a pruner that cannot take continuations: said now
        scheduler = extend.sparing(scheduler)  # the continuations run to their horizon
    shipped = shipping.runtime_env(space, options.fit, options.address)
    undo = _undo(output, exp_dir)
    try:
        try:  # checked above; a file system may still say no (/proc, a full disk)
            exp_dir.mkdir(parents=True)
        except OSError as err:
            raise UserError(f"output folder {output}: cannot create {exp_dir.name} in it "
                            f"({err.strerror or err})") from None
        study, run_info = _start(space, options, stream, url, run_id, exp_dir, plan)
    except UserError:
        undo()
        raise
    return _tune(space, plan, scheduler, options, study, run_info, exp_dir, stream,
                 previous=run_info["previous_run"], shipped=shipped, undo=undo, loaded=loaded)


def _start(space: Any, options: RunOptions, stream: TextIO | None, url: str, run_id: str,
           exp_dir: Path, plan: TrialPlan) -> tuple[Any, dict]:
    """The study (new or continued) and the run's folder and run file: (study, run info)."""
    info = pruner_info(space)
    storage = studies.open_storage(url)
    directions = [o.direction for o in plan.objectives]
    if info.uses_searcher:
        build_sampler(space, len(plan.objectives))  # unknown names and bad grids fail here
    warm = continue_study(storage, space, directions, [o.metric for o in plan.objectives],
                          best=0 if options.extend else _warm_k(
                              space, plan, info.uses_searcher, options.warm_start),
                          new=options.new)
    study = warm.study
    extension = None
    if options.extend:  # the continuations take the warm start's place
        extension = extend.plan_extension(study, space, plan.budget)
        extend.enqueue(study, extension)
    for line in warm.lines() if extension is None else [extension.line(), *warm.notes]:
        print(line, file=stream or sys.stdout)
    space_format = write_space(exp_dir, space)  # before the run file: a run has its space
    run_info = {"run_id": run_id, "space_name": space.name, "study_name": study.study_name,
                "storage_url": url, "options": secret_free(asdict(options)), "pid": os.getpid(),
                "host": socket.gethostname(), "started": time.time(), "state": "running",
                "previous_run": warm.previous, "warm_start": warm.record(),
                "space_format": space_format, "stages": _stages_state(space, options),
                "extend": extension.record() if extension is not None else None}
    write_run_file(exp_dir, run_info)
    return study, run_info


def _undo(output: Path, exp_dir: Path):
    """What a run refused before its first trial takes back: its run folder, and the output
    folder when the run created it and no other run is in it (as initdb removes the data
    folder it made when it fails)."""
    import shutil

    fresh = not output.exists()

    def undo() -> None:
        shutil.rmtree(exp_dir, ignore_errors=True)
        if fresh and output.is_dir() and not runs_of(output):
            shutil.rmtree(output, ignore_errors=True)
    return undo


def _stages_state(space: Any, options: RunOptions) -> str | None:
    from search.stages import enabled_stages

    if not enabled_stages(space):
        return None
    return "pending" if options.stages else "skipped"


def _tune(space: Any, plan: TrialPlan, scheduler, options: RunOptions, study, run_info: dict,
          exp_dir: Path, stream: TextIO | None, *, previous: dict | None = None,
          resume: bool = False, shipped: dict | None = None, undo=None,
          loaded: Any = None) -> Outcome:
    """One Tune experiment of the run (a fresh one when resuming) over the study. `undo`:
    what to take back when the run is refused before Tune starts (see _undo); `loaded`: the
    data the driver's check loaded for the space's first configuration (not loaded again)."""
    fitting = False
    try:
        with ray_session(options.address, options.cpus, runtime_env=shipped) as cluster:
            tuner, plan, searcher = _tuner(space, plan, scheduler, options, study, run_info,
                                           exp_dir, stream, cluster, previous, resume, loaded)
            fitting = True
            return _finish(tuner, study, plan, run_info, exp_dir, searcher)
    except UserError:
        if undo is not None and not fitting:
            undo()
        raise


def _tuner(space: Any, plan: TrialPlan, scheduler, options: RunOptions, study, run_info: dict,
           exp_dir: Path, stream: TextIO | None, cluster: dict, previous: dict | None,
           resume: bool, loaded: Any = None):
    """The Tune experiment on the Ray session whose resources `cluster` holds, the plan with
    its trials placed on the nodes, and the study's searcher (None for PBT)."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    info = pruner_info(space)
    output, run_id, url = exp_dir.parent, run_info["run_id"], run_info["storage_url"]
    nodes = gpus.node_resources()  # a trial must fit one node; GPUs spread, then pack
    slots = concurrency(plan.resources, cluster, nodes, plan.budget.seeds)
    # A resumed run has only its trials left to run: fewer at once, a larger share each.
    left = trials_left(study, run_id, plan.budget.trials) if resume and \
        info.uses_searcher else plan.budget.trials
    # every seed of a trial trains on a GPU share of its own
    plan = gpus.placed(plan, nodes, min(slots, left) * plan.budget.seeds)
    if plan.resources.gpu:
        print(gpus.placement_line(plan.resources, nodes, min(slots, left), plan.budget.seeds),
              file=stream or sys.stdout)
    gpus.preflight(space, plan)  # torch on a GPU worker can use its GPU
    max_t = plan.budget.max_epochs
    started = started_at_once(space, max_t, slots,
                              capped=plan.resources.max_concurrent is not None)
    if not info.uses_searcher:  # PBT: the whole population at once, the extra members
        started = max(started, plan.budget.trials)  # wait paused for a free CPU
    note = holding_note(space, max_t, started)
    if note and not resume:
        print(note, file=stream or sys.stdout)
    at_once = min(started, plan.budget.trials)
    print(f"Ray ready ({_shown_resources(cluster)}): "
          f"{'one trial' if at_once == 1 else f'up to {at_once} trials'} at a time",
          file=stream or sys.stdout, flush=True)
    searcher, label, param_space, samples, callbacks = _how_to_search(
        space, plan, info.uses_searcher, storage_url=url, study_name=study.study_name,
        run_id=run_id, objectives=plan.objectives, experiment_dir=str(exp_dir))
    stopper = TargetStopper(plan.objectives[0], plan.budget.target)
    tracking = _tracking(space, options, output, run_id, study, label, previous, resume)
    if tracking is not None:
        callbacks.append(tracking)
        if resume:  # runs of trials that ended while no driver could say so
            tracking.tracker.settle(study)
    if not resume:
        run_info["mlflow_run_id"] = tracking.tracker.parent_id if tracking is not None \
            else None
        write_run_file(exp_dir, run_info)
        record_run(study, {k: run_info[k] for k in ("run_id", "mlflow_run_id", "host",
                                                     "started")} | {"output": str(output)})
    callbacks += [CSVLoggerCallback(), JsonLoggerCallback()]
    if info.uses_searcher:  # after tracking, which may still read a finished trial's files
        callbacks.append(DiskBudget())
    callbacks.insert(0, Progress(plan.budget.trials, plan.objectives[0],
                                 plan.budget.time_limit, label, options.live, stream,
                                 str(exp_dir), plan.objectives, epochs=max_t))
    # small data: loaded once (by the check above, when it ran), for every trial
    shared = share_data(preflight.first_config(space), default_fit=plan.fit == DEFAULT_FIT,
                        gpu=plan.resources.gpu, loaded=loaded)
    tuner = tune.Tuner(
        make_trainable(space, plan, shared), param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=samples,
            max_concurrent_trials=started, time_budget_s=plan.budget.time_limit,
            reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=run_id, storage_path=str(output), verbose=0, stop=stopper,
            callbacks=callbacks, log_to_file=True,
            failure_config=tune.FailureConfig(max_failures=options.retries),
            # PBT copies other trials' checkpoints: it needs them kept until read. With a
            # searcher DiskBudget keeps the newest only (num_to_keep would make Tune save
            # its whole state every epoch: search/tune/disk.py)
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=None if info.uses_searcher else checkpoints_to_keep(space))))
    return tuner, plan, searcher


def trials_left(study, run_id: str, budget: int) -> int:
    """How many trials a resumed run still runs: the budget less the trials the searcher
    already counted (those with a Tune trial id), and at least the orphans of the dead driver
    (detached by `settle`), which run again whatever the budget says."""
    from optuna.trial import TrialState

    trials = studies.of_run(study.get_trials(deepcopy=False), run_id)
    counted = sum(1 for t in trials if t.user_attrs.get(studies.TUNE_TRIAL_ID))
    orphans = sum(1 for t in trials if t.state == TrialState.RUNNING
                  and not t.user_attrs.get(studies.TUNE_TRIAL_ID))
    return max(1, orphans, budget - counted)


def _shown_resources(cluster: dict) -> str:
    cpus, gpus_ = cluster.get("CPU", 0), cluster.get("GPU", 0)
    return f"{cpus:g} CPUs" + (f", {gpus_:g} GPUs" if gpus_ else "")


def _how_to_search(space: Any, plan: TrialPlan, uses_searcher: bool, **common):
    """(searcher, trial labeller, param_space, num_samples, callbacks): the study's searcher
    drawing budget.trials trials, or for PBT a population drawn up front and a recorder that
    writes its members into the study."""
    from ray import tune

    if uses_searcher:
        searcher = StudySearcher(space, max_trials=plan.budget.trials, **common)
        return searcher, searcher.number_of, None, plan.budget.trials, []
    from search.tune.pbt import StudyRecorder, initial_population

    population = initial_population(space, plan.budget.trials, space.seed)
    return (None, None, {"params": tune.grid_search(population)}, 1,
            [StudyRecorder(space, **common)])


def _warm_k(space: Any, plan: TrialPlan, uses_searcher: bool, k: int) -> int:
    """How many earlier best configs a changed space enqueues: none for PBT (its population is
    drawn up front) and grids (their points are fixed), at most the run's budget."""
    if k < 0:
        raise UserError(f"--warm-start: must be >= 0, got {k}")
    grid = space.sampler.name == "grid"
    return 0 if not uses_searcher or grid else min(k, plan.budget.trials)


def _tracking(space: Any, options: RunOptions, output: Path, run_id: str, study, label,
              previous: dict | None = None, resume: bool = False):
    """The MLflow callback when the space's tracking is enabled (search/tracking/); its parent
    run links to the previous run of the study."""
    if not space.tracking.enabled:
        return None
    from search.tracking.factory import make_tracking

    links = {"search.studies.study": study.study_name}
    if previous:
        links["search.previous_run_id"] = previous.get("run_id")
        links["search.previous_run"] = previous.get("mlflow_run_id")
    return make_tracking(space, output_dir=output, run_id=run_id,
                         space_path=getattr(space, "source", None),
                         tracking_uri=options.tracking_uri, study=study, trial_number=label,
                         register=options.fit in (None, DEFAULT_FIT), resume=resume,
                         tags={k: v for k, v in links.items() if v})


def _target_reached(trials: list, plan: TrialPlan) -> bool:
    target, first = plan.budget.target, plan.objectives[0]
    return target is not None and any(
        t.state.name == "COMPLETE" and (t.values[0] == target or first.better(t.values[0], target))
        for t in trials)


def _target_in(results, plan: TrialPlan) -> bool:
    """A trial's final result reached the target (the study may not know it yet: Tune stops
    the run before the searcher hears of that trial)."""
    target, first = plan.budget.target, plan.objectives[0]
    if target is None:
        return False
    for r in results:
        value = (r.metrics or {}).get(FINAL_PREFIX + first.metric)
        if (r.metrics or {}).get(FINISHED_KEY) and isinstance(value, (int, float)) and (
                value == target or first.better(value, target)):
            return True
    return False


def _finish(tuner, study, plan: TrialPlan, run_info: dict, exp_dir: Path,
            searcher: StudySearcher | None = None) -> Outcome:
    """Fit, then settle the study: nothing of a run that ended may stay RUNNING."""
    from optuna.trial import TrialState

    started = time.monotonic()
    results = tuner.fit()
    unfinished = len(results) - results.num_terminated - results.num_errors
    run_trials = studies.of_run(study.get_trials(deepcopy=False), run_info["run_id"])
    gave_up = getattr(searcher, "gave_up", None)
    if gave_up is not None:
        run_info["gave_up"] = gave_up
    ended_early = gave_up is not None or _target_reached(run_trials, plan) or \
        _target_in(results, plan) or (
        plan.budget.time_limit is not None
        and time.monotonic() - started >= plan.budget.time_limit) or (
        hasattr(study.sampler, "is_exhausted") and study.sampler.is_exhausted(study))
    if ended_early:
        # Trials Tune ended without telling the searcher (the target or the time budget
        # stopped the whole run) are told from their last result, as PRUNED.
        settle(study, run_info["run_id"], exp_dir, plan.objectives, detach=False)
    # Otherwise a trial the searcher was not told about was stopped by Ctrl-C / SIGTERM (Tune
    # then marks it TERMINATED, so its status cannot say): the run is resumable.
    left = any(t.state == TrialState.RUNNING for t in
               studies.of_run(study.get_trials(deepcopy=False), run_info["run_id"]))
    interrupted = unfinished > 0 or (not ended_early and (
        left or len(run_trials) < plan.budget.trials))
    if not interrupted:
        studies.fail_leftovers(study, run_info["run_id"],
                               "the run ended before this trial reported how it ended")
    run_info.update(state="interrupted" if interrupted else "finished", ended=time.time())
    write_run_file(exp_dir, run_info)
    return _outcome(study, run_info, exp_dir, plan, interrupted)


def _outcome(study, run_info: dict, exp_dir: Path, plan: TrialPlan,
             interrupted: bool = False) -> Outcome:
    counts = studies.counts(studies.of_run(study.get_trials(deepcopy=False),
                                           run_info["run_id"]))
    return Outcome(run_info["run_id"], exp_dir, run_info["study_name"],
                   run_info["storage_url"], counts, plan.objectives, interrupted,
                   studies.best_trials(study), run_info.get("gave_up"))


def trial_files(exp_dir: Path, tune_id: str) -> tuple[dict | None, Path | None]:
    """(last result, newest checkpoint folder) that a Tune trial left in its folder: the
    trainable's final result when it finished, else the last line of Tune's result.json
    (JSON, never Tune's pickled state)."""
    import json

    folder = exp_dir / f"trial_{tune_id}" if tune_id else None
    if folder is None or not folder.is_dir():
        return None, None
    result = None
    final = folder / RESULT_FILE
    if final.is_file():
        result = json.loads(final.read_text())
    elif (folder / "result.json").is_file():
        lines = [ln for ln in (folder / "result.json").read_text().splitlines() if ln.strip()]
        try:
            result = json.loads(lines[-1]) if lines else None
        except ValueError:  # a line cut short by the kill
            result = json.loads(lines[-2]) if len(lines) > 1 else None
    checkpoints = sorted(p for p in folder.glob("checkpoint_*")
                         if p.is_dir() and any(p.iterdir()))
    return result, (checkpoints[-1] if checkpoints else None)


def settle(study, run_id: str, exp_dir: Path, objectives,
           detach: bool = True) -> dict[str, int]:
    """Settle the study's RUNNING trials of a run from their trial folders (after a run, or
    before resuming one whose driver died). Finished or failed by their files → told;
    otherwise, with `detach`, marked to run again (same number and parameters) under a new
    Tune trial, from `resume_from`, their newest checkpoint, when they saved one; without
    `detach` (a run that ended), told as stopped (PRUNED) from their last result."""
    from optuna.trial import TrialState

    done = {"told": 0, "resumed": 0, "restarted": 0}
    for t in studies.of_run(study.get_trials(deepcopy=False), run_id):
        if t.state != TrialState.RUNNING:
            continue
        tune_id = t.user_attrs.get(studies.TUNE_TRIAL_ID) or ""
        result, checkpoint = trial_files(exp_dir, tune_id)
        ended = result is not None and (result.get(FINISHED_KEY) or result.get(FAIL_KEY))
        if ended or (not detach and result is not None):
            conclude(study, t.number, objectives, result)
            done["told"] += 1
            continue
        if not detach:
            continue
        trial = studies.live(study, t.number)
        if tune_id:
            trial.set_user_attr(studies.ORPHAN_OF, tune_id)
            if not t.user_attrs.get(FIRST_TUNE_ID):
                trial.set_user_attr(FIRST_TUNE_ID, tune_id)
        if checkpoint is not None:
            trial.set_user_attr(RESUME_FROM, str(checkpoint))
        trial.set_user_attr(studies.TUNE_TRIAL_ID, "")
        resumed = checkpoint is not None or t.user_attrs.get(RESUME_FROM)
        done["resumed" if resumed else "restarted"] += 1
    return done


def resume_search(output: Path, options: RunOptions = RunOptions(),
                  stream: TextIO | None = None) -> Outcome:
    """Continue the newest unfinished run in `output` (after Ctrl-C or a killed driver): its
    search from the study, or only its stages when the search had ended."""
    precheck.check_options(options)
    exp_dir = find_run(output)
    run_info = read_run_file(exp_dir)
    space = run_space(exp_dir, run_info)
    saved = run_info.get("options", {})
    address = options.address or saved.get("address") or os.environ.get("RAY_ADDRESS")
    if address and run_info.get("state") != "finished":  # said in seconds, before a write
        precheck.check_ray(address, "--address" if options.address else
                           "the run's --address" if saved.get("address") else "$RAY_ADDRESS")
    fit = saved.get("fit") or space_fit(space)
    loaded = None
    if fit == DEFAULT_FIT:  # the user's factories may have changed since the run started
        loaded = (preflight.check_user_code(space) or {}).get("data")
    plan, scheduler = _plan(space, fit, exp_dir)
    if run_info.get("extend"):  # its continuations still run to their horizon unpruned
        scheduler = extend.sparing(scheduler)
    shipped = shipping.runtime_env(space, fit, options.address or saved.get("address"))
    storage = studies.open_storage(run_info["storage_url"])
    study = studies.load_study(storage, run_info["study_name"])
    if run_info.get("state") == "finished":  # only its stages are left
        print(f"resuming {exp_dir.name}: its search had ended; its stages run now",
              file=stream or sys.stdout)
        return _outcome(study, run_info, exp_dir, plan)
    preflight.check_data(space)  # the files may have moved since the run started
    if not pruner_info(space).uses_searcher:
        # a PBT population lives in Tune's pickled state only: run it again
        studies.fail_leftovers(study, run_info["run_id"], "the driver died; a PBT run "
                               "resumes by running its population again")
    settled = settle(study, run_info["run_id"], exp_dir, plan.objectives)
    print(f"resuming {exp_dir.name}: of the trials left running, {settled['told']} ended "
          f"before the stop and are now recorded, {settled['resumed']} continue from their "
          f"checkpoints, {settled['restarted']} start again",
          file=stream or sys.stdout)
    run_info = {**run_info, "pid": os.getpid(), "host": socket.gethostname(),
                "state": "running", "resumed": time.time(), "settled": settled}
    write_run_file(exp_dir, run_info)
    options = replace(options, address=options.address or saved.get("address"),
                      cpus=options.cpus or saved.get("cpus"),
                      retries=saved.get("retries", options.retries),
                      tracking_uri=options.tracking_uri or saved.get("tracking_uri"))
    return _tune(space, plan, scheduler, options, study, run_info, exp_dir, stream,
                 resume=True, shipped=shipped, loaded=loaded)
