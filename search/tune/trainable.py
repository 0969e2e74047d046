"""The Tune function trainable: one trial = one call of trainers.fit (or the space's `fit:`,
or `--fit`; docs/own-training.md) with a Tune report.

Each epoch's metrics go to `tune.report` with `training_iteration` = the epoch and a Tune
checkpoint of fit's last.pt/best.pt, so schedulers that pause (HyperBand, PBT) and `search resume`
can continue a trial. The final epoch's report is held back and sent together with the end of
the trial (test accuracy, size, `trial_finished`, the objective at the selected epoch): a
scheduler that stops every trial at max_t would otherwise stop it one report before it could
say it finished. Known failures (the user's mistakes, a diverged loss, a GPU torch cannot use)
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.studies import study as studies
from search.cluster import gpus
from search.lifecycle.plan import Budget, Objective, Resources, epochs_cap
from search.tune.searcher import FAIL_KEY, FINAL_PREFIX, NODE_KEY, RESUME_FROM
from search.tune.outcome import (clean, final_fields, fold_fields, known_failure,  # noqa: F401
                                 last_epoch_report, one_line, out_of_memory, selected_value)
from search.tune.seedrun import KNOWN, OOM
from search.tune.seeds import SeedFailed, train_seeds
from search.lifecycle.usercode import DEFAULT_FIT, fit_keywords, fit_result, resolve_fit

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


def node_id() -> str:
    """The Ray node running this trial (hosts may run several nodes; ids are unique)."""
    import ray

    return ray.get_runtime_context().get_node_id()


class EpochReporter:
    """The `report` callable given to fit: forwards each epoch to Tune, holds the last one."""

    def __init__(self, epochs: int, checkpoint_dir: Path):
        self.epochs = epochs
        self.checkpoint_dir = checkpoint_dir
        self.last: dict | None = None
        self.history: list[dict] = []  # what a fit that returns no history reported
        self.cleaned = False

    def _send(self, metrics: dict) -> None:
        from ray import tune

        metrics = {**metrics, NODE_KEY: node_id()}
        checkpoint = None
        if any(self.checkpoint_dir.iterdir()):
            checkpoint = tune.Checkpoint.from_directory(str(self.checkpoint_dir))
        tune.report(metrics, checkpoint=checkpoint)

    def __call__(self, metrics: dict) -> bool:
        epoch = metrics.get("epoch") if isinstance(metrics, dict) else None
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            from search.errors import UserError
            raise UserError("report(metrics): metrics must be a dict with the epoch number "
                            f"(1, 2, ...) under 'epoch', got {metrics!r:.80}")
        self.history.append(clean(metrics))
        self.last = {**clean(metrics), "training_iteration": int(metrics["epoch"])}
        if int(metrics["epoch"]) < self.epochs:  # the last epoch waits for finish()
            self._send(self.last)
        return False  # schedulers stop trials through Tune, never through this return

    def finish(self, extra: dict) -> None:
        """The trial's last report: the held (or repeated) last epoch plus `extra`. The trial's
        clean-up runs first: a reused actor waits only TUNE_FUNCTION_THREAD_TIMEOUT_S for the
        thread to end after this report (search/cluster/connect.py)."""
        gpus.trial_cleanup()
        self.cleaned = True
        self._send({**(self.last or {"training_iteration": 0}), **extra})


def run_trial(space: Any, plan: TrialPlan, config: dict) -> None:
    """The body of one Tune trial (see the module docstring)."""
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
    reporter = EpochReporter(1, work)
    try:
        try:
            settings = epochs_cap(space.config_from_params(dict(config.get("params", {}))),
                                  plan.budget)
            reporter.epochs = int(settings.get("train", {}).get("epochs", 1))
            resume_from = _restore(work, config.get(RESUME_FROM))
            if plan.budget.seeds > 1:  # K trainings at once, each a Ray actor (seeds.py)
                final, history = train_seeds(plan, settings, reporter, work)
            else:
                final, history = _train(plan, settings, reporter, work, resume_from)
        except Exception as err:
            kind = err.kind if isinstance(err, SeedFailed) else \
                OOM if out_of_memory(err) else KNOWN if known_failure(err) else None
            if kind == OOM:
                reporter.finish({gpus.OOM_KEY: f"out of memory: {one_line(err)}"})
                return
            if kind == KNOWN:
                reporter.finish({FAIL_KEY: one_line(err)})
                return
            trial_dir.mkdir(parents=True, exist_ok=True)
            (trial_dir / "fail_reason.txt").write_text(one_line(err) + "\n")
            raise
        if reporter.last is None:  # resumed after its last epoch (PBT, a retry): no epoch ran
            reporter.last = last_epoch_report(history)
        final = {**final, studies.TRIAL_DIR: str(trial_dir), studies.HORIZON: reporter.epochs}
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / HISTORY_FILE).write_text(json.dumps(history))
        done.write_text(json.dumps({**(reporter.last or {}), **final}))
        reporter.finish(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not reporter.cleaned:
            gpus.trial_cleanup()


def _train(plan: TrialPlan, settings: dict, reporter: EpochReporter, work: Path,
           resume_from: str | None) -> tuple[dict, list[dict]]:
    """One training in this process: (the last result's fields, the per-epoch history)."""
    fit = resolve_fit(plan.fit)  # a worker without the user's module: a FAIL reason
    torch = sys.modules.get("torch")  # threads whenever the fit uses torch (Ray: 1)
    if torch is not None:
        torch.set_num_threads(plan.resources.threads)
    gpus.trial_setup(plan, settings)
    result = fit(settings, **fit_keywords(fit, dict(
        report=reporter, checkpoint_dir=str(work), resume_from=resume_from,
        cpus=plan.resources.threads)))
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


def make_trainable(space: Any, plan: TrialPlan):
    """The Tune trainable with the per-trial resources of the plan."""
    from ray import tune

    def search_trial(config: dict) -> None:
        run_trial(space, plan, config)

    if plan.budget.seeds > 1:  # an empty head bundle: the seeds' actors hold the K bundles
        bundles = [{}] + [plan.resources.request()] * plan.budget.seeds
        return tune.with_resources(search_trial, tune.PlacementGroupFactory(bundles))
    return tune.with_resources(search_trial, plan.resources.request())
