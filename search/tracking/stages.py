"""The post-search stages in MLflow: one child run of the search's parent per stage.

`StageLog.open(output, run_id)` reattaches to a finished (or running) search run through the
settings it saved (tracking/<run id>/settings.json), so `search stages` days later writes to the
same experiment and parent, and through the same Writer: a backend that is down spools the
stage's writes like the search's (`search sync` replays them). None when the search was not
tracked (`tracking.enabled: false`): then nothing is written anywhere.

The stage runs are children of one run named `stages` (tag `search.kind` = stages), a child of
the search's parent, so that they sit apart from the trials; it ends FINISHED when a pipeline
finishes, FAILED or KILLED with the stage that did. A stage run carries the tags `search.stage`
(finetune, distill, quantize; `best` for the search's own model, measured as stage 0) and
`search.stage_index`; its params are the stage's options, its metrics the measured figures
under the trials' names (`num_params`, not `params`) and, per training epoch, the trials' curves
(`epoch/val_accuracy`, `training/lr`, ...: names.py), its artifacts `stage/model.pt` and
`stage/result.json`. The final stage's model is registered under `tracking.register_as` with the
alias `candidate` (the search's best trial has `best`), its logged model named for what it is
(`finetuned`, `distilled`, `quantized`).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from .backend import normalise, probe
from .names import (STAGES, STAGES_RUN, TAG_KIND, split_result, stage_model_name,
                    whole_run_key)
from .runs import PARENT, stage_key
from .spool import now_ms
from .settings import Settings, saved_runs
from .tracker import TAG_REASON, SearchTracker

log = logging.getLogger("search.tracking")

CANDIDATE = "candidate"
STAGE_LOADER = "search.stages:registry_model"


class StageLog:
    """The stage runs of one search run. `name` below is the run's key within the search
    (e.g. "1-finetune", unique per attempt), shown as the run's name in MLflow."""

    def __init__(self, settings: Settings, tracker: SearchTracker) -> None:
        self.settings, self.tracker = settings, tracker
        self._group_open = False

    @classmethod
    def open(cls, output: str | Path, run_id: str,
             tracking_uri: str | None = None) -> StageLog | None:
        found = [s for s in saved_runs(output) if s.run_id == run_id]
        if not found:
            return None
        settings = found[-1]
        if tracking_uri:
            settings = replace(settings, uri=normalise(tracking_uri, "--tracking-uri"))
        writer = settings.writer()
        try:
            probe(settings.uri)
        except Exception as err:  # stages still run: their writes wait in the spool
            writer.go_down(err)
        else:
            if writer.down:  # the search's own spool goes first
                writer.replay()
        tracker = SearchTracker(writer, name=f"{settings.name} {run_id}", metric=settings.metric,
                                mode=settings.mode)
        return cls(settings, tracker)

    @property
    def writer(self):
        return self.tracker.writer

    def _open_group(self) -> None:
        """The `stages` run (created, or reopened RUNNING by a later pipeline)."""
        if not self._group_open:
            self.writer.write({"op": "run", "key": STAGES_RUN, "name": STAGES_RUN,
                               "parent": PARENT, "tags": {TAG_KIND: STAGES},
                               "start_time": now_ms()})
            self._group_open = True

    def start(self, name: str, stage: Mapping[str, Any], index: int,
              params: Mapping[str, Any]) -> str | None:
        self._open_group()
        tags = {"search.stage": stage["stage"], "search.stage_index": index,
                "search.state": "RUNNING"}
        run_id = self.tracker.start_child(name, tags, parent=STAGES_RUN)
        self.tracker.log_params(name, params)
        return run_id

    def curve(self, name: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        """One training epoch of a stage, under the trials' curve names (its constants are
        among the figures `finish` logs)."""
        curves, _ = split_result(dict(metrics), last=False)
        self.tracker.log_metrics(name, curves, step=int(epoch))

    def finish(self, name: str, figures: Mapping[str, Any], files: list[Path]) -> None:
        self.tracker.log_metrics(name, {whole_run_key(k): v for k, v in figures.items()})
        for path in files:
            self.writer.write({"op": "artifact", "key": stage_key(name), "local": str(path),
                               "path": "stage"})
        self.writer.write({"op": "batch", "key": stage_key(name),
                           "tags": {"search.state": "COMPLETE"}})
        self.tracker.end_child(name)

    def fail(self, name: str, reason: str, status: str = "FAILED") -> None:
        """The stage failed (or was interrupted: KILLED), and its pipeline with it."""
        self.writer.write({"op": "batch", "key": stage_key(name),
                           "tags": {"search.state": "FAILED", TAG_REASON: reason[:1000]}})
        self.tracker.end_child(name, status)
        self.done(status)

    def done(self, status: str = "FINISHED") -> None:
        """The pipeline ended: so does the `stages` run."""
        self._open_group()
        self.writer.write({"op": "end", "key": STAGES_RUN, "status": status,
                           "end_time": now_ms()})
        self._group_open = False

    def close_killed(self) -> int:
        """End as KILLED the stage runs that a pipeline killed mid-stage left RUNNING (a
        pipeline starting now is the only one of its run); how many."""
        if self.writer.down:
            return 0
        try:
            runs = self.writer.book.children()
        except Exception:  # unreachable now: they are closed by the next pipeline
            return 0
        killed = [r for r in runs if r.info.status == "RUNNING" and "search.stage" in r.data.tags]
        for run in killed:
            key = run.data.tags["search.key"]
            self.writer.write({"op": "batch", "key": key, "tags": {
                "search.state": "KILLED", TAG_REASON: "its pipeline was stopped; a later "
                                                      "attempt is a run of its own"}})
            self.writer.write({"op": "end", "key": key, "status": "KILLED",
                               "end_time": now_ms()})
        return len(killed)

    def register(self, name: str, model_path: Path,
                 result: Mapping[str, Any] | None = None) -> str | None:
        """The final model as a version of `register_as`, alias `candidate`, carrying the
        figures of the stage's `result` (result.json); the version, or None (spooled, or
        refused: `refused` says why)."""
        if not self.settings.register_as:
            return None
        result = result or {}
        stage = (result.get("stage") or {}).get("stage", "stage")
        figures = {whole_run_key(k): float(v) for k, v in (result.get("figures") or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        kind = f" ({result['kind']})" if result.get("kind") else ""
        trial = result.get("source_trial")
        return self.writer.write({
            "op": "model", "key": stage_key(name), "checkpoint": str(model_path),
            "name": self.settings.register_as, "alias": CANDIDATE, "loader": STAGE_LOADER,
            "model_name": stage_model_name(stage), "source": f"stage {name}",
            "about": f"Stage {name}{kind} of the search {self.settings.name} "
                     f"{self.settings.run_id}" + (f", from trial {trial}" if trial is not None
                                                  else ""),
            "figures": figures,
            "tags": {"search.stage": stage, "search.stage_kind": result.get("kind"),
                     "search.source_trial": trial}})

    def note(self, path: str, text: str) -> None:
        """A text artifact on the search's parent run (the stage table)."""
        self.writer.write({"op": "text", "key": PARENT, "path": path, "text": text})

    def refused(self, op: str = "model") -> str | None:
        """Why the backend refused the last write of kind `op`, if it did."""
        reasons = [reason for written, reason in self.writer.dropped if written["op"] == op]
        return reasons[-1] if reasons else None

    @property
    def spooled(self) -> int:
        return len(self.writer.spool) if self.writer.down else 0
