"""One search in MLflow: the parent run, a child run per trial (and per stage), their metrics,
states and checkpoints. Knows nothing of Ray: callback.py translates Tune's events into these
calls, and later stages call `start_child` / `log_metrics` / `end_child` directly.

Every write goes through the Writer (spool.py), so a backend that disappears mid-search costs no
data and never stops the search.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from search.studies import study as studies
from search.studies.study import FIRST_TUNE_ID

from .checkpoints import TopK
from .names import (SEARCH, SEED, STAGE, TAG_KIND, TAG_SEED, TRIAL, seed_run_name,
                    split_result, split_seeds, trial_run_name)
from .runs import PARENT, flatten, metrics_of, params_of, stage_key, tags_of, trial_key
from .spool import Writer, now_ms

log = logging.getLogger("search.tracking")

COMPLETE, PRUNED, FAILED = "COMPLETE", "PRUNED", "FAILED"
TAG_STATE, TAG_REASON = "search.state", "search.reason"
TAG_SCORE, TAG_CKPT, TAG_CKPT_DIR = "search.score", "search.checkpoint", "search.checkpoint_dir"
TAG_NUMBER, TAG_TUNE_ID = "optuna.trial_number", "tune.trial_id"
TAG_DEVICE = "search.device"
RUN_ID_ATTR = studies.MLFLOW_RUN_ID  # Optuna user attribute pointing at the child run
# Result keys of search/tune/trainable.py: the last result of a trial that ended by itself carries
# FINISHED_KEY, one that failed in a known way FAIL_KEY, and the objective at the selected
# epoch is FINAL_PREFIX + metric.
FINISHED_KEY, FAIL_KEY, FINAL_PREFIX = "trial_finished", "fail_reason", "final_"
OOM_KEY, DEVICE_KEY = "out_of_memory", "device"


@dataclass
class TrialRecord:
    """What the tracker remembers of one trial (for states, checkpoints and the end report)."""

    tune_id: str
    key: str
    config: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    number: int | None = None
    run_id: str | None = None
    budget: int | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch, curve metric)
    best: float | None = None
    final: dict = field(default_factory=dict)  # last value of every metric
    last_step: int = 0
    stopped: bool = False  # the scheduler (or a stopper) ended it
    logged: set = field(default_factory=set)  # the whole-trial values logged (MLflow keys)
    finished: bool = False  # its last result says it ended by itself
    fail: str | None = None  # its last result says it failed (and why)
    out_of_memory: str | None = None  # its last result says it ran out of memory (and how)
    state: str | None = None
    reason: str = ""
    checkpoint: str | None = None  # local folder of the trial's last checkpoint
    kept: bool = False
    seeds: list = field(default_factory=list)  # budget.seeds > 1: the seeds' child runs


class SearchTracker:
    """The runs of one search. `metric`/`mode` rank trials (Tune's words: "max" or "min")."""

    def __init__(self, writer: Writer, *, name: str, metric: str, mode: str = "max",
                 keep_checkpoints: int = 3, budget: int | None = None, study: Any = None,
                 trial_number: Callable[[str], int | None] | None = None,
                 set_run_id: Callable[[str, str], None] | None = None,
                 config_from_params: Callable[[dict], dict] | None = None,
                 curve_metric: str = "val_accuracy") -> None:
        self.writer, self.name, self.metric, self.mode = writer, name, metric, mode
        self.budget, self.study, self.curve_metric = budget, study, curve_metric
        self.config_from_params = config_from_params
        self.trial_number, self.set_run_id = trial_number, set_run_id
        self.top = TopK(keep_checkpoints, mode)
        self.trials: dict[str, TrialRecord] = {}
        self.parent_id: str | None = None

    # ------------------------------------------------------------------------------ parent
    def start(self, *, params: Mapping[str, Any], tags: Mapping[str, Any],
              texts: Mapping[str, str] = {}, files: Mapping[str, str] = {},
              resume: bool = False) -> str | None:
        """Create (or, resuming, reattach to) the parent run and log the search's settings."""
        self.parent_id = self.writer.write({"op": "run", "key": PARENT, "name": self.name,
                                            "parent": None,
                                            "tags": tags_of({TAG_KIND: SEARCH, **tags}),
                                            "start_time": now_ms()})
        self.writer.write({"op": "batch", "key": PARENT, "params": params_of(params)})
        for path, text in texts.items():
            self.writer.write({"op": "text", "key": PARENT, "path": path, "text": text})
        for path, local in files.items():
            self.writer.write({"op": "artifact", "key": PARENT, "local": str(local),
                               "path": path})
        if resume:
            self._restore_kept()
        return self.parent_id

    def _restore_kept(self) -> None:
        """Resuming: the trials whose checkpoints MLflow already keeps stay in the top k."""
        if self.writer.down:
            return
        try:
            runs = self.writer.book.children()
        except Exception as err:  # unreachable now: the resumed top-k starts empty
            log.warning("tracking: cannot read earlier trials (%s)", err)
            return
        for run in runs:
            tags = run.data.tags
            if tags.get(TAG_CKPT) == "kept" and TAG_SCORE in tags:
                self.top.restore(tags["search.key"], float(tags[TAG_SCORE]))

    # ------------------------------------------------------------------------------ trials
    def trial_started(self, tune_id: str, config: Mapping[str, Any]) -> TrialRecord:
        rec = self.trials.get(tune_id)
        if rec is not None and rec.state is None:
            return rec  # a restarted actor of a running trial
        number, frozen = self.optuna_trial(tune_id)
        # a trial resumed after its driver died continues the run of its first Tune trial
        first = frozen.user_attrs.get(FIRST_TUNE_ID) if frozen is not None else None
        rec = self.trials[tune_id] = TrialRecord(tune_id, trial_key(first or tune_id))
        rec.number = number
        rec.params, rec.config = self._params_and_config(dict(config), frozen)
        epochs = flatten(rec.config).get("train.epochs")
        limits = [b for b in (epochs, self.budget) if isinstance(b, int)
                  and not isinstance(b, bool)]
        rec.budget = min(limits) if limits else None  # budget.max_epochs caps train.epochs
        name = trial_run_name(rec.number, tune_id)
        tags = {"search.state": "RUNNING", TAG_KIND: TRIAL, TAG_TUNE_ID: tune_id,
                TAG_NUMBER: rec.number}
        tags.update(self._extends_tags(frozen))
        rec.run_id = self.writer.write({"op": "run", "key": rec.key, "name": name,
                                        "parent": PARENT, "tags": tags_of(tags),
                                        "start_time": now_ms()})
        self.writer.write({"op": "batch", "key": rec.key, "params": params_of(rec.params)})
        self.writer.write({"op": "text", "key": rec.key, "path": "config.yaml",
                           "text": _yaml(rec.config)})
        if rec.run_id is not None:
            self._link_optuna(rec, frozen)
        return rec

    def _extends_tags(self, frozen) -> dict:
        """A continuation (`search run --extend`): the trial it continues and that trial's
        MLflow run, so the UI links the two."""
        number = frozen.user_attrs.get(studies.EXTENDS) if frozen is not None else None
        if number is None or self.study is None:
            return {}
        tags = {"search.extends": number}
        try:
            original = self.study.get_trials(deepcopy=False)[int(number)]
            if original.user_attrs.get(RUN_ID_ATTR):
                tags["search.extends_run"] = original.user_attrs[RUN_ID_ATTR]
        except (IndexError, ValueError) as err:
            log.warning("tracking: cannot read trial %s that %s extends (%s)", number,
                        frozen.number, err)
        return tags

    def _params_and_config(self, config: dict, frozen) -> tuple[dict, dict]:
        """The sampled values (Optuna's, else the trial's config flattened) and the resolved
        config (rebuilt from the sampled values when the trial's config holds only them)."""
        only_params = set(config) == {"params"} and isinstance(config["params"], Mapping)
        if frozen is not None and frozen.params:
            params = dict(frozen.params)
        else:
            params = dict(config["params"]) if only_params else flatten(config)
        if self.config_from_params is not None and (only_params or frozen is not None):
            try:
                return params, self.config_from_params(params)
            except Exception as err:  # the trial's own config is still worth recording
                log.warning("tracking: cannot resolve the config of %s (%s)", params, err)
        return params, config

    def trial_result(self, tune_id: str, result: Mapping[str, Any], *,
                     stopping: bool = False, skip: tuple[str, ...] = ()) -> None:
        """One report of a trial (normally one epoch). `stopping`: the scheduler ends it here."""
        rec = self.trials.get(tune_id) or self.trial_started(tune_id, {})
        metrics, seeds = split_seeds(metrics_of(result, skip))
        step = result.get("epoch", result.get("training_iteration", rec.last_step + 1))
        step = int(step) if isinstance(step, (int, float)) else rec.last_step + 1
        rec.last_step, rec.stopped = max(rec.last_step, step), stopping
        rec.finished = rec.finished or bool(result.get(FINISHED_KEY))
        rec.fail = result.get(FAIL_KEY) or rec.fail
        rec.out_of_memory = result.get(OOM_KEY) or rec.out_of_memory
        if isinstance(result.get(DEVICE_KEY), str):  # the device it trained on, searchable
            self.writer.write({"op": "batch", "key": rec.key,
                               "tags": tags_of({TAG_DEVICE: result[DEVICE_KEY]})})
        rec.final.update(metrics)  # by the trainable's names (the report reads them)
        value = metrics.get(self.metric)
        if value is not None and not math.isnan(value) and (
                rec.best is None or (value > rec.best if self.mode == "max" else value < rec.best)):
            rec.best = value
        if self.curve_metric in metrics and all(s != step for s, _ in rec.curve):
            rec.curve.append((step, metrics[self.curve_metric]))
        # Per-epoch values as curves at their epoch; the last result's whole-trial values
        # (test accuracy, the objective at the selected epoch, ...) once, at step 0 (names.py).
        last = any(result.get(k) for k in (FINISHED_KEY, FAIL_KEY, OOM_KEY))
        curves, whole = split_result(metrics, last)
        rec.logged.update(whole)
        ts = now_ms()
        self.writer.write({"op": "batch", "key": rec.key,
                           "metrics": [[k, v, ts, step] for k, v in curves.items()] +
                                      [[k, v, ts, 0] for k, v in whole.items()]})
        for seed, values in seeds.items():
            self._seed_result(rec, seed, values, step, last)

    def _seed_result(self, rec: TrialRecord, seed: int, values: dict, step: int,
                     last: bool) -> None:
        """One seed's values of a trial's report, in the seed's child run of the trial."""
        key = f"{rec.key}/seed-{seed}"
        if key not in rec.seeds:
            rec.seeds.append(key)
            self.writer.write({"op": "run", "key": key, "name": seed_run_name(seed),
                               "parent": rec.key, "start_time": now_ms(),
                               # no trial tags: what reads trials back skips it
                               "tags": tags_of({TAG_KIND: SEED, TAG_SEED: seed})})
        curves, whole = split_result(values, last)
        ts = now_ms()
        self.writer.write({"op": "batch", "key": key,
                           "metrics": [[k, v, ts, step] for k, v in curves.items()] +
                                      [[k, v, ts, 0] for k, v in whole.items()]})

    def _end_seeds(self, rec: TrialRecord, status: str) -> None:
        for key in rec.seeds:
            self.writer.write({"op": "end", "key": key, "status": status,
                               "end_time": now_ms()})

    def trial_ended(self, tune_id: str, *, checkpoint: str | None = None) -> TrialRecord:
        """A trial ended without raising. The study says how, when there is one (the searcher
        has told it by now); else its last result: FAILED when it carries a fail reason,
        PRUNED when the scheduler stopped it before its budget of epochs, else COMPLETE."""
        rec = self.trials.get(tune_id) or self.trial_started(tune_id, {})
        if rec.state is not None:
            return rec
        _, frozen = self.optuna_trial(tune_id)
        told = frozen.state.name if frozen is not None and frozen.state.is_finished() else None
        if told == "FAIL" or (told is None and rec.fail):
            return self.trial_failed(tune_id, rec.fail or "")
        of = f" of {rec.budget}" if rec.budget else ""
        if rec.out_of_memory:  # the searcher tells it PRUNED: the sampler avoids its kind
            rec.state, rec.reason = PRUNED, rec.out_of_memory
        elif told == "PRUNED" or (told is None and rec.stopped and not rec.finished and (
                rec.budget is None or rec.last_step < rec.budget)):
            rec.state, rec.reason = PRUNED, f"stopped by the scheduler after epoch " \
                                            f"{rec.last_step}{of}"
        else:
            early = rec.budget is not None and rec.last_step < rec.budget
            rec.state = COMPLETE
            rec.reason = f"{'stopped early' if early else 'finished'} after epoch " \
                         f"{rec.last_step}{of}"
            # The study's value is the objective at the selected epoch: rank by it.
            if told == "COMPLETE" and frozen.values:
                rec.best = float(frozen.values[0])
            elif isinstance(rec.final.get(FINAL_PREFIX + self.metric), float):
                rec.best = rec.final[FINAL_PREFIX + self.metric]
        rec.checkpoint = checkpoint
        self._log_objective(rec, frozen)
        tags = {TAG_STATE: rec.state, TAG_REASON: rec.reason}
        if rec.best is not None:
            tags[TAG_SCORE] = repr(rec.best)
        if rec.state == COMPLETE and checkpoint and rec.best is not None:
            rec.kept, pushed_out = self.top.offer(rec.key, rec.best)
            if rec.kept:
                self.writer.write({"op": "artifact", "key": rec.key, "local": checkpoint,
                                   "path": "checkpoint"})
                tags.update({TAG_CKPT: "kept", TAG_CKPT_DIR: checkpoint})
            for key in pushed_out:
                self._drop_checkpoint(key)
        self.writer.write({"op": "batch", "key": rec.key, "tags": tags_of(tags)})
        self._end_seeds(rec, "FINISHED")
        self.writer.write({"op": "end", "key": rec.key, "status": "FINISHED",
                           "end_time": now_ms(), "name": self._name(rec)})
        return rec

    def _name(self, rec: TrialRecord) -> str:
        return trial_run_name(rec.number, rec.tune_id, rec.state)

    def _log_objective(self, rec: TrialRecord, frozen) -> None:
        """The objective under its own name, once per trial (names.py), when the last result
        did not carry it: a pruned trial's is the value the study ranks it by (its last
        reported one), a complete trial's the study's value."""
        if self.metric in rec.logged:
            return
        value = None
        if rec.state == PRUNED:
            if frozen is not None and frozen.values:
                value = frozen.values[0]
            else:
                value = rec.final.get(self.metric)
        elif rec.state == COMPLETE:
            value = rec.best
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.writer.write({"op": "batch", "key": rec.key,
                               "metrics": [[self.metric, float(value), now_ms(), 0]]})

    def trial_failed(self, tune_id: str, reason: str,
                     config: Mapping[str, Any] | None = None) -> TrialRecord:
        """A trial that raised (or reported a fail reason); `reason` is one line. Without one,
        the study's `fail_reason` (when the searcher recorded it) is used."""
        rec = self.trials.get(tune_id) or self.trial_started(tune_id, config or {})
        if rec.state is not None:
            return rec
        if not reason.strip():
            _, frozen = self.optuna_trial(tune_id)
            reason = (frozen.user_attrs.get(FAIL_KEY) if frozen is not None else None) or ""
        rec.state, rec.reason = FAILED, reason.strip()[:1000] or "failed"
        self.writer.write({"op": "batch", "key": rec.key,
                           "tags": tags_of({TAG_STATE: FAILED, TAG_REASON: rec.reason})})
        self._end_seeds(rec, "FAILED")
        self.writer.write({"op": "end", "key": rec.key, "status": "FAILED",
                           "end_time": now_ms(), "name": self._name(rec)})
        return rec

    def settle(self, study: Any) -> int:
        """Resuming: end the trial runs a dead driver left RUNNING whose study trial has
        ended since (told from its files by the resume), with the study's state; the others
        are continued by their resumed trials. How many were ended."""
        if self.writer.down:
            return 0
        try:
            runs = self.writer.book.children()
            trials = study.get_trials(deepcopy=False)
        except Exception as err:
            log.warning("tracking: cannot read the runs to settle (%s)", err)
            return 0
        ended = {"COMPLETE": (COMPLETE, "FINISHED"), "PRUNED": (PRUNED, "FINISHED"),
                 "FAIL": (FAILED, "FAILED")}
        seed_runs: dict[str, list[str]] = {}  # a trial's key -> its seeds' RUNNING runs
        for run in runs:
            tags = run.data.tags
            if tags.get(TAG_KIND) == SEED and run.info.status == "RUNNING":
                key = tags.get("search.key", "")
                seed_runs.setdefault(key.rsplit("/", 1)[0], []).append(key)
        done = 0
        for run in runs:
            tags = run.data.tags
            number = tags.get(TAG_NUMBER, "")
            if run.info.status != "RUNNING" or "search.stage" in tags or not number.isdigit() \
                    or int(number) >= len(trials) or trials[int(number)].state.name not in ended:
                continue
            trial = trials[int(number)]
            state, status = ended[trial.state.name]
            reason = trial.user_attrs.get(FAIL_KEY) or "ended while its driver was stopped"
            values = {TAG_STATE: state, TAG_REASON: reason}
            if state == COMPLETE and trial.values:
                values[TAG_SCORE] = repr(float(trial.values[0]))
            objective = [[self.metric, float(trial.values[0]), now_ms(), 0]] \
                if state != FAILED and trial.values else []
            self.writer.write({"op": "batch", "key": tags["search.key"],
                               "tags": tags_of(values), "metrics": objective})
            for key in seed_runs.get(tags["search.key"], []):
                self.writer.write({"op": "end", "key": key, "status": status,
                                   "end_time": now_ms()})
            self.writer.write({"op": "end", "key": tags["search.key"], "status": status,
                               "end_time": now_ms(),
                               "name": trial_run_name(int(number), tags.get(TAG_TUNE_ID, ""),
                                                      state)})
            done += 1
        return done

    def _drop_checkpoint(self, key: str) -> None:
        for rec in self.trials.values():
            if rec.key == key:
                rec.kept = False
        self.writer.write({"op": "delete", "key": key, "path": "checkpoint"})
        self.writer.write({"op": "batch", "key": key, "tags": {TAG_CKPT: "deleted"}})

    # ------------------------------------------------------------------------------ optuna
    def optuna_trial(self, tune_id: str):
        """(number, FrozenTrial) of the Optuna trial behind a Tune trial, or (None, None). The
        searcher records `tune_trial_id` as a user attribute; `trial_number` may say instead."""
        if self.study is None:
            return None, None
        try:
            trials = self.study.get_trials(deepcopy=False)
            if self.trial_number is not None:
                number = self.trial_number(tune_id)
                return (number, trials[number]) if number is not None else (None, None)
            for t in reversed(trials):
                if t.user_attrs.get(studies.TUNE_TRIAL_ID) == tune_id:
                    return t.number, t
        except Exception as err:  # the study is an aid here, never a reason to stop
            log.warning("tracking: cannot read the Optuna trial of %s (%s)", tune_id, err)
        return None, None

    def _link_optuna(self, rec: TrialRecord, frozen) -> None:
        """Record the child run's id on the Optuna trial (while it is still writable)."""
        try:
            if self.set_run_id is not None:
                self.set_run_id(rec.tune_id, rec.run_id)
            elif frozen is not None and not frozen.state.is_finished():
                from spaces.optuna_private import writable_trial

                writable_trial(self.study, frozen).set_user_attr(RUN_ID_ATTR, rec.run_id)
        except Exception as err:
            log.warning("tracking: cannot set %s on Optuna trial %s (%s)", RUN_ID_ATTR,
                        rec.number, err)

    # ------------------------------------------------------------------------------ stages
    def start_child(self, name: str, tags: Mapping[str, Any] | None = None,
                    parent: str = PARENT) -> str | None:
        """A child run of the search (or of the run with key `parent`) for a later stage
        (finetune, distillation, ...); its id, or None while the backend is unreachable (the
        writes are spooled all the same)."""
        return self.writer.write({"op": "run", "key": stage_key(name), "name": name,
                                  "parent": parent,
                                  "tags": tags_of({"search.stage": name, TAG_KIND: STAGE,
                                                   **(tags or {})}),
                                  "start_time": now_ms()})

    def log_metrics(self, name: str, metrics: Mapping[str, Any], step: int = 0) -> None:
        ts = now_ms()
        self.writer.write({"op": "batch", "key": stage_key(name),
                           "metrics": [[k, v, ts, step] for k, v in metrics_of(metrics).items()]})

    def log_params(self, name: str, params: Mapping[str, Any]) -> None:
        self.writer.write({"op": "batch", "key": stage_key(name), "params": params_of(params)})

    def end_child(self, name: str, status: str = "FINISHED") -> None:
        self.writer.write({"op": "end", "key": stage_key(name), "status": status,
                           "end_time": now_ms()})


def _yaml(tree: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(_plain(tree), sort_keys=False)


def _plain(value: Any) -> Any:
    """Values YAML can write (tuples to lists, other objects to text)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
