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
from search.lifecycle.plan import FINAL_METRICS, Budget, Objective, Resources, epochs_cap
from search.tune.searcher import (FAIL_KEY, FINAL_PREFIX, FINISHED_KEY, HELD_KEY, NODE_KEY,
                                  RESUME_FROM)
from search.lifecycle.usercode import DEFAULT_FIT, fit_keywords, fit_result, resolve_fit
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


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def known_failure(err: BaseException) -> bool:
    """Failures that a retry would only repeat: end the trial as FAIL at once."""
    from search.errors import UserError
    from trainers.errors import DivergedError

    kinds = (UserError, DivergedError, FloatingPointError)
    return isinstance(err, kinds) or out_of_memory(err)


def out_of_memory(err: BaseException) -> bool:
    """CUDA (or host) out of memory: the configuration does not fit its share of the device."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(err, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(err, (RuntimeError, MemoryError)) and (
        isinstance(err, MemoryError) or "out of memory" in str(err).lower())


def selected_value(result: Any, metric: str) -> float | None:
    """A metric at the selected epoch (FitResult.best_epoch; the last epoch when unset), or a
    whole-trial value such as test_accuracy. val_accuracy is FitResult.best_val_accuracy: the
    same number for one split, and the mean over folds of each fold's best with k-fold."""
    if metric == "val_accuracy" and getattr(result, "best_val_accuracy", None) is not None:
        return result.best_val_accuracy
    if metric in FINAL_METRICS:
        return getattr(result, metric, None)
    history = list(getattr(result, "history", []) or [])
    if not history:
        return None
    best = getattr(result, "best_epoch", None)
    row = next((h for h in history if h.get("epoch") == best), history[-1])
    return row.get(metric)


def node_id() -> str:
    """The Ray node running this trial (hosts may run several nodes; ids are unique)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def _clean(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float, str, bool)) or v is None}


def due(epoch: int, report_at: tuple[int, ...] | None, since_s: float) -> bool:
    """Whether an epoch before the last is reported now (see the module docstring)."""
    return report_at is None or epoch in report_at or since_s >= REPORT_EVERY_S


class EpochReporter:
    """The `report` callable given to fit: forwards each epoch to Tune (or holds it for the
    next report, see `due`), holds the last one."""

    def __init__(self, epochs: int, checkpoint_dir: Path,
                 report_at: tuple[int, ...] | None = None):
        self.epochs = epochs
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
        epoch = metrics.get("epoch") if isinstance(metrics, dict) else None
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            from search.errors import UserError
            raise UserError("report(metrics): metrics must be a dict with the epoch number "
                            f"(1, 2, ...) under 'epoch', got {metrics!r:.80}")
        self.history.append(_clean(metrics))
        if self.unsent:  # the previous epoch goes with the next report
            self.held.append(self.last)
        epoch = int(metrics["epoch"])
        self.last, self.unsent = {**_clean(metrics), "training_iteration": epoch}, True
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


def last_epoch_report(history: list[dict] | None) -> dict | None:
    """The report of a run's last epoch, rebuilt from its history: a trial resumed after its
    last epoch reports no epoch, yet its final report must carry the metrics (PBT and the
    schedulers require them in every result)."""
    if not history:
        return None
    return {**_clean(history[-1]), "training_iteration": int(history[-1]["epoch"])}


def final_fields(result: Any, objectives: tuple[Objective, ...], trial_dir: str) -> dict:
    out = {FINISHED_KEY: True, "selected_epoch": getattr(result, "best_epoch", None),
           studies.EPOCHS_RUN: len(getattr(result, "history", []) or []),
           studies.TEST_ACCURACY: getattr(result, "test_accuracy", None),
           "num_params": getattr(result, "num_params", None), studies.TRIAL_DIR: trial_dir,
           "split": getattr(result, "split", None) or None}
    for o in objectives:
        value = selected_value(result, o.metric)
        out[FINAL_PREFIX + o.metric] = float(value) if isinstance(value, (int, float)) \
            else value
    out.update(fold_fields(result))
    return out


def fold_fields(result: Any) -> dict:
    """With k-fold (data.kfold > 1): how many folds ran and each fold's score (its best
    validation accuracy; the objective val_accuracy is their mean), as the study's user attrs
    `folds` and `fold_val_accuracy` and as MLflow metrics fold<i>_val_accuracy."""
    folds = list(getattr(result, "folds", None) or [])
    if not folds:
        return {}
    scores = [float(f.best_val_accuracy) for f in folds]
    return {"folds": len(folds), "fold_val_accuracy": scores,
            **{f"fold{i}_val_accuracy": v for i, v in enumerate(scores, 1)}}


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
    reporter = EpochReporter(1, work, plan.report_at)
    try:
        try:
            fit = resolve_fit(plan.fit)  # a worker without the user's module: a FAIL reason
            torch = sys.modules.get("torch")  # threads whenever the fit uses torch (Ray: 1)
            if torch is not None:
                torch.set_num_threads(plan.resources.threads)
            settings = epochs_cap(space.config_from_params(dict(config.get("params", {}))),
                                  plan.budget)
            reporter.epochs = int(settings.get("train", {}).get("epochs", 1))
            gpus.trial_setup(plan, settings)
            result = fit(settings, **fit_keywords(fit, dict(
                report=reporter, checkpoint_dir=str(work), resume_from=_restore(work, config.get(RESUME_FROM)),
                cpus=plan.resources.threads)), **shared_for(shared, settings))
            result = fit_result(result, reporter.history)
        except Exception as err:
            if out_of_memory(err):
                reporter.finish({gpus.OOM_KEY: f"out of memory: {one_line(err)}"})
                return
            if known_failure(err):
                reporter.finish({FAIL_KEY: one_line(err)})
                return
            trial_dir.mkdir(parents=True, exist_ok=True)
            (trial_dir / "fail_reason.txt").write_text(one_line(err) + "\n")
            raise
        if reporter.last is None:  # resumed after its last epoch (PBT, a retry): no epoch ran
            reporter.last = last_epoch_report(getattr(result, "history", None))
        final = {**final_fields(result, plan.objectives, str(trial_dir)),
                 **gpus.device_fields(result), studies.HORIZON: reporter.epochs}
        if any(o.metric == "latency_ms" for o in plan.objectives):
            from search.lifecycle.latency import latency_ms

            final["latency_ms"] = final[FINAL_PREFIX + "latency_ms"] = latency_ms(
                settings, getattr(result, "checkpoint", None), plan.resources.threads)
        trial_dir.mkdir(parents=True, exist_ok=True)
        history = [_clean(row) for row in getattr(result, "history", None) or []]
        (trial_dir / HISTORY_FILE).write_text(json.dumps(history))
        held = {HELD_KEY: reporter.held} if reporter.held else {}  # told from this file too
        done.write_text(json.dumps({**(reporter.last or {}), **held, **final}))
        reporter.finish(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not reporter.cleaned:
            gpus.trial_cleanup()


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
    for item in src.iterdir():
        if item.is_file():
            shutil.copy2(item, dest / item.name)


def make_trainable(space: Any, plan: TrialPlan, shared: Any = None):
    """The Tune trainable with the per-trial resources of the plan; `shared` data (a
    shared_data.SharedData) go through Ray's object store, put there once."""
    from ray import tune

    def search_trial(config: dict, shared: Any = None) -> None:
        run_trial(space, plan, config, shared)

    trainable = search_trial if shared is None else tune.with_parameters(search_trial,
                                                                          shared=shared)
    return tune.with_resources(trainable, plan.resources.request())
