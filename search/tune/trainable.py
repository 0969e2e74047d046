"""The Tune function trainable: one trial = one call of trainers.fit (or the space's `fit:`,
or `--fit`; docs/own-training.md) with a Tune report.

Each epoch's metrics go to `tune.report` with `training_iteration` = the epoch and a Tune
checkpoint of fit's last.pt/best.pt, so schedulers that pause (HyperBand, PBT) and `search resume`
can continue a trial. When the scheduler can decide only at some epochs (ASHA's rungs:
`TrialPlan.report_at`), the epochs between are held and sent with the next report under
`held_epochs` (the searcher and MLflow record each of them), unless REPORT_EVERY_S passed since
the last report: a report is a round trip to the driver and a checkpoint copy, which costs more
than a small model's epoch, while a slow epoch is still reported (and checkpointed) as it ends,
so a killed run loses at most that much training. The final epoch's report is held back and
sent together with the end of the trial (test accuracy, size, `trial_finished`, the objective
at the selected epoch): a scheduler that stops every trial at max_t would otherwise stop it one
report before it could say it finished. Known failures (the user's mistakes, a diverged loss, a GPU torch cannot use)
end the trial with a `fail_reason` result and no retry; running out of memory ends it with an
`out_of_memory` result, which the searcher tells the study as PRUNED so that the sampler learns
the configuration is too big (search/README.md, "GPUs"); anything else is raised, so Tune
retries it (`--retries`) and the searcher marks it FAIL with the line left in
`fail_reason.txt`. A GPU trial caps its memory at its share of the GPU and gives its cached
memory back when it ends (search/cluster/gpus.py), and reports the device it trained on.
With `budget.seeds` K > 1 the trial trains nothing itself: its K seeds train as Ray actors in
the K bundles of its placement group and it reports their mean (seeds.py).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.studies import study as studies
from search.cluster import gpus
from search.lifecycle.plan import Budget, Objective, Resources, epochs_cap
from search.tune.keys import MISTAKE_KEY
from search.tune.searcher import FAIL_KEY, FINAL_PREFIX, HELD_KEY, NODE_KEY, RESUME_FROM
from search.tune.outcome import (clean, crash_line, final_fields, fold_fields,  # noqa: F401
                                 known_failure, last_epoch_report, one_line, out_of_memory,
                                 selected_value)
from search.tune.seedrun import KNOWN, OOM
from search.tune.seeds import SeedFailed, train_seeds
from search.lifecycle.usercode import (DEFAULT_FIT, ContractError, check_report,
                                      epoch_objectives, fit_keywords, fit_result, resolve_fit)
from search.tune.shared_data import shared_for

REPORT_EVERY_S = 10.0  # an epoch ending this long after the last report is reported anyway
RESULT_FILE = "search_result.json"  # the final result, kept so a restarted trial is not run again
# The per-epoch metrics of the model a finished trial ends with: its own epochs and, for a PBT
# member that continued another member's checkpoint, that member's epochs before the copy.
HISTORY_FILE = "history.json"


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a run shares (shipped to the workers with the trainable)."""

    objectives: tuple[Objective, ...]
    budget: Budget
    resources: Resources
    fit: str = DEFAULT_FIT  # "module:function": trainers.fit or one with its contract
    experiment_dir: str = ""  # the Tune experiment folder (trial folders are trial_<id>)
    # the epochs before the last at which the scheduler decides (search/tune/pruners.py,
    # decision_epochs); None: every epoch is reported
    report_at: tuple[int, ...] | None = None


def node_id() -> str:
    """The Ray node running this trial (hosts may run several nodes; ids are unique)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def due(epoch: int, report_at: tuple[int, ...] | None, since_s: float) -> bool:
    """Whether an epoch before the last is reported now (see the module docstring)."""
    return report_at is None or epoch in report_at or since_s >= REPORT_EVERY_S


class EpochReporter:
    """The `report` callable given to fit: forwards each epoch to Tune (or holds it for the
    next report, see `due`), holds the last one. `expects`: the metrics each epoch must carry
    (the objectives a pruner reads per epoch), checked on the first report."""

    def __init__(self, epochs: int, checkpoint_dir: Path,
                 report_at: tuple[int, ...] | None = None, expects: tuple[str, ...] = ()):
        self.epochs = epochs
        self.expects = expects
        self.checkpoint_dir = checkpoint_dir
        self.report_at = report_at
        self.last: dict | None = None  # the latest epoch's report
        self.unsent = False  # whether `last` is still to be sent
        self.held: list[dict] = []  # epochs not sent yet, before `last`
        self.sent_at = time.monotonic()
        self.history: list[dict] = []  # what a fit that returns no history reported
        self.cleaned = False

    def _send(self, metrics: dict) -> None:
        from ray import tune

        metrics = {**metrics, NODE_KEY: node_id()}
        if self.held:
            metrics[HELD_KEY], self.held = self.held, []
        checkpoint = None
        if any(self.checkpoint_dir.iterdir()):
            checkpoint = tune.Checkpoint.from_directory(str(self.checkpoint_dir))
        tune.report(metrics, checkpoint=checkpoint)
        self.sent_at = time.monotonic()

    def __call__(self, metrics: dict) -> bool:
        check_report(metrics, self.history, self.epochs, self.expects)
        self.history.append(clean(metrics))
        if self.unsent:  # the previous epoch goes with the next report
            self.held.append(self.last)
        epoch = int(metrics["epoch"])
        self.last, self.unsent = {**clean(metrics), "training_iteration": epoch}, True
        if epoch < self.epochs and due(epoch, self.report_at,  # the last waits for finish()
                                       time.monotonic() - self.sent_at):
            self._send(self.last)
            self.unsent = False
        return False  # schedulers stop trials through Tune, never through this return

    def finish(self, extra: dict) -> None:
        """The trial's last report: the held (or repeated) last epoch plus `extra`. The trial's
        clean-up runs first: a reused actor waits only TUNE_FUNCTION_THREAD_TIMEOUT_S for the
        thread to end after this report (search/cluster/connect.py)."""
        gpus.trial_cleanup()
        self.cleaned = True
        self._send({**(self.last or {"training_iteration": 0}), **extra})


def run_trial(space: Any, plan: TrialPlan, config: dict, shared: Any = None) -> None:
    """The body of one Tune trial (see the module docstring); `shared`: the data the driver
    loaded for every trial (search/tune/shared_data.py), used when they are this trial's."""
    from ray import tune

    # The trial's folder in the run's storage (get_trial_dir() is a temporary staging folder).
    trial_dir = Path(plan.experiment_dir, f"trial_{tune.get_context().get_trial_id()}")
    done = trial_dir / RESULT_FILE
    if done.is_file():  # finished before the driver was restarted: report it, do not rerun
        tune.report(json.loads(done.read_text()))
        return
    if not plan.resources.gpu:  # Ray leaves CUDA_VISIBLE_DEVICES alone for GPU-less trials
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    work = Path(tempfile.mkdtemp(prefix="search-ckpt-"))
    reporter = EpochReporter(1, work, plan.report_at, expects=epoch_objectives(plan.objectives))
    try:
        try:
            settings = epochs_cap(space.config_from_params(dict(config.get("params", {}))),
                                  plan.budget)
            reporter.epochs = int(settings.get("train", {}).get("epochs", 1))
            resume_from = _restore(work, config.get(RESUME_FROM))
            if plan.budget.seeds > 1:  # K trainings at once, each a Ray actor (seeds.py)
                final, history = train_seeds(plan, settings, reporter, work)
            else:
                final, history = _train(plan, settings, reporter, work, resume_from, shared)
        except Exception as err:
            kind = err.kind if isinstance(err, SeedFailed) else \
                OOM if out_of_memory(err) else KNOWN if known_failure(err) else None
            if kind == OOM:
                reporter.finish({gpus.OOM_KEY: f"out of memory: {one_line(err)}"})
                return
            if kind == KNOWN:
                mistake = {MISTAKE_KEY: True} if isinstance(err, ContractError) else {}
                reporter.finish({FAIL_KEY: one_line(err), **mistake})
                return
            trial_dir.mkdir(parents=True, exist_ok=True)
            (trial_dir / "fail_reason.txt").write_text(crash_line(err) + "\n")
            raise
        if reporter.last is None:  # resumed after its last epoch (PBT, a retry): no epoch ran
            reporter.last = last_epoch_report(history)
        final = {**final, studies.TRIAL_DIR: str(trial_dir), studies.HORIZON: reporter.epochs}
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / HISTORY_FILE).write_text(json.dumps(history))
        held = {HELD_KEY: reporter.held} if reporter.held else {}  # told from this file too
        done.write_text(json.dumps({**(reporter.last or {}), **held, **final}))
        reporter.finish(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not reporter.cleaned:
            gpus.trial_cleanup()


def _train(plan: TrialPlan, settings: dict, reporter: EpochReporter, work: Path,
           resume_from: str | None, shared: Any = None) -> tuple[dict, list[dict]]:
    """One training in this process: (the last result's fields, the per-epoch history);
    `shared`: the driver's data for every trial, passed on when they are this trial's."""
    fit = resolve_fit(plan.fit)  # a worker without the user's module: a FAIL reason
    torch = sys.modules.get("torch")  # threads whenever the fit uses torch (Ray: 1)
    if torch is not None:
        torch.set_num_threads(plan.resources.threads)
    gpus.trial_setup(plan, settings)
    result = fit(settings, **fit_keywords(fit, dict(
        report=reporter, checkpoint_dir=str(work), resume_from=resume_from,
        cpus=plan.resources.threads)), **shared_for(shared, settings))
    result = fit_result(result, reporter.history)
    final = {**final_fields(result, plan.objectives, ""), **gpus.device_fields(result)}
    if any(o.metric == "latency_ms" for o in plan.objectives):
        from search.lifecycle.latency import latency_ms

        final["latency_ms"] = final[FINAL_PREFIX + "latency_ms"] = latency_ms(
            settings, getattr(result, "checkpoint", None), plan.resources.threads)
    return final, [clean(row) for row in getattr(result, "history", None) or []]


def _restore(work: Path, resume_from: str | None = None) -> str | None:
    """Copy the trial's latest Tune checkpoint (after a pause or a retry), else the checkpoint
    folder a killed driver's trial left (`resume_from`, set by `search resume`), into the
    working folder; the path of its last.pt for fit's resume_from (loaded weights_only)."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as src:
            _copy_files(Path(src), work)
    elif resume_from and Path(resume_from).is_dir():
        _copy_files(Path(resume_from), work)
    last = work / "last.pt"
    return str(last) if last.is_file() else None


def _copy_files(src: Path, dest: Path) -> None:
    """The checkpoint's files, and its seeds' folders (budget.seeds > 1: seeds.py)."""
    for item in src.iterdir():
        if item.is_file():
            shutil.copy2(item, dest / item.name)
        elif item.is_dir():
            shutil.copytree(item, dest / item.name, dirs_exist_ok=True)


def make_trainable(space: Any, plan: TrialPlan, shared: Any = None):
    """The Tune trainable with the per-trial resources of the plan; `shared` data (a
    shared_data.SharedData) go through Ray's object store, put there once."""
    from ray import tune

    def search_trial(config: dict, shared: Any = None) -> None:
        run_trial(space, plan, config, shared)

    trainable = search_trial if shared is None else tune.with_parameters(search_trial,
                                                                          shared=shared)
    if plan.budget.seeds > 1:  # an empty head bundle: the seeds' actors hold the K bundles
        bundles = [{}] + [plan.resources.request()] * plan.budget.seeds
        return tune.with_resources(trainable, tune.PlacementGroupFactory(bundles))
    return tune.with_resources(trainable, plan.resources.request())
