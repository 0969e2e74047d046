"""The Ray Tune Callback that records a search in MLflow from the driver.

Tune calls it on the driver for every trial event, so all MLflow writes come from one process:
no "database is locked" under concurrent trials, and trials on other nodes are recorded in the
same place without any MLflow set-up there. The trainable only reports metrics to Tune.

The callback is pickled with the Tuner (tuner.pkl) and unpickled by `Tuner.restore`: its state
is plain settings, and it reconnects (reattaching to its runs by tags) in `setup`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from search.tune.searcher import epoch_rows

from .backend import probe
from .report import FinishReport, finish, previous_trials
from .settings import Settings
from .tracker import SearchTracker

log = logging.getLogger("search.tracking")

# Values Tune adds to every result: bookkeeping, not the trainable's metrics.
TUNE_KEYS = (*AUTO_RESULT_KEYS, "done", "trial_id", "should_checkpoint", "experiment_tag",
             "warmup_time", "timesteps_this_iter", "episodes_this_iter", "__duplicate__")


class TrackingCallback(Callback):
    """Tune events -> SearchTracker. `finish(study)` (also run by `on_experiment_end` unless
    `finish_on_end=False`) writes the end-of-search report and registers the best model."""

    def __init__(self, settings: Settings, tracker: SearchTracker | None = None, *,
                 study: Any = None, config_from_params: Callable[[dict], dict] | None = None,
                 trial_number: Callable[[str], int | None] | None = None,
                 set_run_id: Callable[[str, str], None] | None = None,
                 finish_on_end: bool = True) -> None:
        self.settings, self.tracker, self.study = settings, tracker, study
        self.config_from_params, self.trial_number = config_from_params, trial_number
        self.set_run_id, self.finish_on_end = set_run_id, finish_on_end
        self.report: FinishReport | None = None

    # -------------------------------------------------------------- pickling (Tuner.restore)
    def __getstate__(self) -> dict:
        state = {"settings": self.settings, "finish_on_end": self.finish_on_end,
                 "tracker": None, "report": None}
        for name in ("study", "config_from_params", "trial_number", "set_run_id"):
            state[name] = _if_picklable(getattr(self, name))
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def setup(self, **info) -> None:
        if self.tracker is None:  # unpickled by Tuner.restore: reattach
            self.tracker = self._connect(resume=True)

    def _connect(self, *, resume: bool) -> SearchTracker:
        s = self.settings
        writer = s.writer()
        try:
            probe(s.uri)
        except Exception as err:  # mid-run there is no stopping: spool until it is back
            writer.go_down(err)
        tracker = SearchTracker(writer, name=f"{s.name} {s.run_id}", metric=s.metric, mode=s.mode,
                                keep_checkpoints=s.keep_checkpoints, budget=s.budget,
                                study=self.study, trial_number=self.trial_number,
                                set_run_id=self.set_run_id,
                                config_from_params=self.config_from_params)
        tracker.start(params={}, tags={}, resume=resume)
        return tracker

    def attach(self, *, study: Any = None, trial_number=None, set_run_id=None,
               config_from_params=None) -> None:
        """Hand a restored callback the objects that could not be pickled."""
        self.study = study if study is not None else self.study
        self.trial_number = trial_number or self.trial_number
        self.set_run_id = set_run_id or self.set_run_id
        self.config_from_params = config_from_params or self.config_from_params
        if self.tracker is not None:
            self.tracker.study = self.study
            self.tracker.trial_number = self.trial_number
            self.tracker.set_run_id = self.set_run_id
            self.tracker.config_from_params = self.config_from_params

    # -------------------------------------------------------------- Tune events
    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._tracker().trial_started(trial.trial_id, trial.config)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict,
                        **info) -> None:
        # Tune marks a result done=True when the scheduler decides to stop the trial there;
        # a trainable that returns by itself ends on a result with done=False. The epochs a
        # result carries from since the previous one (HELD_KEY) are logged at their own steps.
        rows = epoch_rows(result)
        for row in rows[:-1]:
            self._tracker().trial_result(trial.trial_id, row, skip=TUNE_KEYS)
        self._tracker().trial_result(trial.trial_id, result, stopping=bool(result.get("done")),
                                     skip=TUNE_KEYS)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._tracker().trial_ended(trial.trial_id, checkpoint=self._checkpoint_dir(trial))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._tracker().trial_failed(trial.trial_id, _error_text(trial), trial.config)

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if self.tracker is not None:
            self.tracker.writer.maybe_replay()

    def on_experiment_end(self, trials: list, **info) -> None:
        # Tune calls this on an interrupted run too (Ctrl-C, SIGUSR1), after marking its
        # running trials TERMINATED: such a run is resumed later and finishes then, so its
        # parent stays open and nothing is registered yet.
        if self.finish_on_end and self._all_ended(trials):
            self.finish(self.study)
        elif self.tracker is not None and self.tracker.writer.down:
            self.tracker.writer.replay()

    def _all_ended(self, trials: list) -> bool:
        """Every trial ended as far as tracking saw it (this session's events, else the state
        an earlier session of a resumed search wrote to MLflow)."""
        tracker = self._tracker()

        def ended() -> bool:
            return all(t.trial_id in tracker.trials and tracker.trials[t.trial_id].state
                       for t in trials)

        if not ended():
            previous_trials(tracker)
        return ended()

    # -------------------------------------------------------------- the end
    def finish(self, study: Any = None) -> FinishReport:
        """Summary, best config, plots, model registry, parent run ended; once per search."""
        if self.report is None:
            s = self.settings
            self.report = finish(self._tracker(), study=study or self.study,
                                 folder=s.folder,
                                 register_as=s.register_as, loader=s.loader)
            if self.report.spooled:
                log.warning("tracking: %d writes wait in %s; run `search sync` when the "
                            "backend is back", self.report.spooled, s.spool_path)
        return self.report

    # stages (finetune, distillation, ...) log as children of the search
    def start_child(self, name: str, tags: dict | None = None) -> str | None:
        return self._tracker().start_child(name, tags)

    def _tracker(self) -> SearchTracker:
        if self.tracker is None:
            self.tracker = self._connect(resume=True)
        return self.tracker

    def _checkpoint_dir(self, trial) -> str | None:
        """A local folder holding the trial's last checkpoint (copied from remote storage
        into the output folder when Tune keeps checkpoints elsewhere)."""
        ckpt = getattr(trial, "checkpoint", None)
        if ckpt is None:
            return None
        try:
            if getattr(ckpt.filesystem, "type_name", "local") == "local":
                return str(ckpt.path)
            dest = self.settings.folder / "checkpoints" / trial.trial_id
            return ckpt.to_directory(str(dest))
        except Exception as err:
            log.warning("tracking: checkpoint of %s unavailable (%s)", trial.trial_id, err)
            return None


def _error_text(trial) -> str:
    """The last line of the trial's traceback ("ValueError: ..."), or what Tune has."""
    text = None
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        text = Path(path).read_text(errors="replace")
    if not text:
        try:
            err = trial.get_error()
            text = str(err) if err else None
        except Exception:
            text = None
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "the trial failed (Tune recorded no error)"


def _if_picklable(obj: Any) -> Any:
    if obj is None:
        return None
    try:
        import ray.cloudpickle

        ray.cloudpickle.dumps(obj)
        return obj
    except Exception:
        return None
