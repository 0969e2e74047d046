"""What a run shows while it runs: a live status line on a terminal, plain log lines otherwise.

A Tune Callback of our own (Tune's reporters are switched off): it counts trials by how they
ended, keeps the best finished value of the first objective, and estimates the time left from
epochs (those run against those left, at the rate epochs have been running), not from finished
trials, which says nothing until the first trial ends. Off a terminal, a heartbeat line says
what the running trials are at when nothing else was printed for a while. Ray's own output is
silenced by the runner; a failed trial's one-line reason is printed here.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from ray.tune import Callback, Stopper

from search.lifecycle.plan import Objective
from search.tune.searcher import (FAIL_KEY, FINAL_PREFIX, FINISHED_KEY, OOM_KEY, error_reason,
                             unfit_objective)


def outcome(trial, ended: bool = False, objectives: Sequence[Objective] = ()) -> str:
    """How a Tune trial ended (or that it has not): COMPLETE, PRUNED, FAIL, RUNNING, PENDING,
    as the study records it (a finished trial whose objective is NaN is a FAIL there).
    `ended`: the trial is ending now (Tune calls back before it updates the status)."""
    result = trial.last_result or {}
    if trial.status == "ERROR" or result.get(FAIL_KEY):
        return "FAIL"
    if ended or trial.status == "TERMINATED":
        if not result.get(FINISHED_KEY):
            return "PRUNED"
        return "FAIL" if unfit_objective(result, objectives) else "COMPLETE"
    return "RUNNING" if trial.status == "RUNNING" else "PENDING"


HEARTBEAT = 60.0  # seconds without a line (off a terminal) before saying what runs


def epochs_of(trial) -> int:
    """The epochs a Tune trial has reported (its last result's `training_iteration`)."""
    value = (trial.last_result or {}).get("training_iteration") or 0
    return int(value) if isinstance(value, (int, float)) else 0


def time_left(trials: list, total: int, epochs: int, ended: set[str], seconds: float) -> \
        float | None:
    """Seconds left at the rate epochs ran so far (`seconds` since the first trial started):
    every trial not yet ended may still run up to `epochs` epochs, and trials not yet started
    all of theirs. None before the first epoch."""
    done = sum(epochs_of(t) for t in trials)
    if done <= 0 or seconds <= 0:
        return None
    left = sum(max(0, epochs - epochs_of(t)) for t in trials if t.trial_id not in ended)
    left += max(0, total - len(trials)) * epochs
    return left * seconds / done


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return (f"{h}:" if h else "") + f"{rest // 60:02d}:{rest % 60:02d}"


class Progress(Callback):
    """Live view (TTY) or log lines (not a TTY). `label(tune_id)` names a trial (the Optuna
    number when a searcher is used)."""

    def __init__(self, total: int, objective: Objective, time_limit: float | None = None,
                 label: Callable[[str], Any] | None = None, live: bool | None = None,
                 stream: TextIO | None = None, experiment_dir: str | None = None,
                 objectives: Sequence[Objective] = (), epochs: int = 1,
                 heartbeat: float = HEARTBEAT):
        self.total = total
        self.epochs = max(1, int(epochs))  # the most epochs a trial runs (the scheduler's max_t)
        self.heartbeat = heartbeat
        self.trials: list = []
        self.first_started: float | None = None
        self._said = time.monotonic()  # when the last line was written (off a terminal)
        self.objective = objective
        self.objectives = tuple(objectives) or (objective,)
        self.time_limit = time_limit
        self.label = label
        self.live = live
        self.stream = stream
        self.experiment_dir = experiment_dir
        self.start = time.monotonic()
        self.best: tuple[float, str] | None = None
        self.counts: dict[str, int] = {}
        self._drawn = float("-inf")  # the first live line is drawn at once
        self._ended: set[str] = set()

    def __getstate__(self) -> dict:  # streams do not pickle; Tune pickles callbacks
        return {**self.__dict__, "stream": None, "trials": []}

    @property
    def out(self) -> TextIO:
        return self.stream or sys.stdout

    @property
    def is_live(self) -> bool:
        return self.out.isatty() if self.live is None else self.live

    def setup(self, **info) -> None:
        self.start = self._said = time.monotonic()

    def name(self, trial) -> str:
        number = self.label(trial.trial_id) if self.label else None
        return f"#{number}" if number is not None else trial.trial_id

    def _count(self, trials: list) -> None:
        self.trials = list(trials)
        self.counts = {}
        for t in trials:
            state = outcome(t, t.trial_id in self._ended, self.objectives)
            self.counts[state] = self.counts.get(state, 0) + 1
        if self.first_started is None and self.counts.get("RUNNING"):
            self.first_started = time.monotonic()

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        if self.first_started is None:
            self.first_started = time.monotonic()

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        # Counting reads every trial: only when the line is drawn (Tune steps many times a
        # second, and a count per step grew with the square of the trials: bench_scale.py).
        now = time.monotonic()
        if self.is_live and now - self._drawn > 0.5:
            self._drawn = now
            self._count(trials)
            self.out.write("\r\x1b[K" + self.line())
            self.out.flush()
        elif not self.is_live and now - self._said >= self.heartbeat:
            self._count(trials)  # a heartbeat is due: the counts it shows
            if self.counts.get("RUNNING"):
                self._say(f"[{clock(now - self.start)}] {self.running()}  | {self.line()}")

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
        self._said = time.monotonic()

    def running(self) -> str:
        """The running trials and the epoch each has reported, with its objective there."""
        parts = []
        for t in self.trials:
            if outcome(t, t.trial_id in self._ended, self.objectives) != "RUNNING":
                continue
            value = (t.last_result or {}).get(self.objective.metric)
            at = f" {self.objective.metric} {value:.4f}" if isinstance(value, float) and \
                math.isfinite(value) else ""
            parts.append(f"{self.name(t)} epoch {epochs_of(t)}/{self.epochs}{at}")
        return "running: " + (", ".join(parts) if parts else "none")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended_trial(trial, trials)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended_trial(trial, trials, error=True)

    def _ended_trial(self, trial, trials: list, error: bool = False) -> None:
        if trial.trial_id in self._ended:
            return
        self._ended.add(trial.trial_id)
        result = trial.last_result or {}
        state = "FAIL" if error else outcome(trial, True, self.objectives)
        self._count(trials)
        value = result.get(FINAL_PREFIX + self.objective.metric)
        if state == "COMPLETE" and isinstance(value, (int, float)) and math.isfinite(value):
            if self.best is None or self.objective.better(value, self.best[0]):
                self.best = (float(value), self.name(trial))
        if state == "FAIL":
            detail = error_reason(self.experiment_dir, trial.trial_id) if error else \
                result.get(FAIL_KEY) or unfit_objective(result, self.objectives)
            if error and trial.error_file:
                detail += f" (traceback: {self._error_file(trial)})"
        elif state == "COMPLETE":
            detail = f"{self.objective.metric}={value:.4f}" if isinstance(value, float) else ""
            if result.get("test_accuracy") is not None:
                detail += f" test_accuracy={result['test_accuracy']:.4f}"
            if result.get("fold_val_accuracy"):  # k-fold: the mean above, each fold here
                detail += f" ({result.get('folds')} folds: " + ", ".join(
                    f"{v:.4f}" for v in result["fold_val_accuracy"]) + ")"
        else:
            detail = result.get(OOM_KEY) or \
                f"stopped at epoch {result.get('training_iteration', 0)}"
        text = f"[{clock(time.monotonic() - self.start)}] trial {self.name(trial)} {state} " \
               f"{detail}".rstrip()
        if self.is_live:
            self.out.write("\r\x1b[K" + text + "\n" + self.line())
            self.out.flush()
        else:
            self._say(text + f"  | {self.line()}")

    def _error_file(self, trial) -> str:
        """Where the trial's traceback is kept: the copy in the run folder (Tune's own path is
        a staging folder of Ray's session under /tmp), shown relative to here when inside."""
        if not self.experiment_dir:
            return str(trial.error_file)
        path = Path(self.experiment_dir, f"trial_{trial.trial_id}", Path(trial.error_file).name)
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)

    def line(self) -> str:
        c = self.counts
        ended = c.get("COMPLETE", 0) + c.get("PRUNED", 0) + c.get("FAIL", 0)
        now = time.monotonic()
        elapsed = now - self.start
        best = f"best {self.objective.metric} {self.best[0]:.4f} ({self.best[1]})" \
            if self.best else "best -"
        left = []
        if ended < self.total and self.first_started is not None:
            eta = time_left(self.trials, self.total, self.epochs, self._ended,
                            now - self.first_started)
            if eta is not None:
                left.append(eta)
        if self.time_limit:
            left.append(max(0.0, self.time_limit - elapsed))
        remaining = f", ~{clock(min(left))} left" if left else ""
        return (f"{ended}/{self.total} done: {c.get('COMPLETE', 0)} complete, "
                f"{c.get('PRUNED', 0)} pruned, {c.get('FAIL', 0)} failed, "
                f"{c.get('RUNNING', 0)} running | {best} | {clock(elapsed)} elapsed{remaining}")

    def on_experiment_end(self, trials: list, **info) -> None:
        if self.is_live:
            self.out.write("\r\x1b[K" + self.line() + "\n")
            self.out.flush()


class TargetStopper(Stopper):
    """Ends each trial on the report that says it ended (finished or failed), and the whole run
    once a trial *finishes* with the first objective at or beyond the target (its value at the
    selected epoch, as told to the study). A stopper decides before the scheduler: a scheduler
    that pauses on every report (synchronous PBT, HyperBand) would otherwise pause the trial's
    last report and resume a trial that has nothing left to run."""

    def __init__(self, objective: Objective, target: float | None = None):
        self.objective = objective
        self.target = target
        self.reached = False

    def __call__(self, trial_id: str, result: dict) -> bool:
        value = result.get(FINAL_PREFIX + self.objective.metric)
        if self.target is not None and result.get(FINISHED_KEY) \
                and isinstance(value, (int, float)) \
                and (value == self.target or self.objective.better(value, self.target)):
            self.reached = True
        # the trial is stopped the ordinary way: its result is told
        return bool(result.get(FINISHED_KEY) or result.get(FAIL_KEY))

    def stop_all(self) -> bool:
        return self.reached
