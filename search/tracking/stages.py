"""The post-search stages in MLflow: one child run of the search's parent per stage.

`StageLog.open(output, run_id)` reattaches to a finished (or running) search run through the
settings it saved (tracking/<run id>/settings.json), so `search stages` days later writes to the
same experiment and parent, and through the same Writer: a backend that is down spools the
stage's writes like the search's (`search sync` replays them). None when the search was not
tracked (`tracking.enabled: false`): then nothing is written anywhere.

A stage run carries the tags `search.stage` (finetune, distill, quantize; `best` for the
search's own model, measured as stage 0) and `search.stage_index`; its params are the stage's
options, its metrics the measured figures (and `epoch/<metric>` curves per training epoch), its
artifacts `stage/model.pt` and `stage/result.json`. The final stage's model is registered under
`tracking.register_as` with the alias `candidate` (the search's best trial has `best`).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from .backend import normalise, probe
from .runs import PARENT, stage_key
from .spool import now_ms
from .settings import Settings, saved_runs
from .tracker import TAG_REASON, SearchTracker

log = logging.getLogger("search.tracking")

CANDIDATE = "candidate"
STAGE_LOADER = "search.stages:registry_model"
CURVE_PREFIX = "epoch/"  # per-epoch values, apart from the stage's final figures


class StageLog:
    """The stage runs of one search run. `name` below is the run's key within the search
    (e.g. "1-finetune", unique per attempt), shown as the run's name in MLflow."""

    def __init__(self, settings: Settings, tracker: SearchTracker) -> None:
        self.settings, self.tracker = settings, tracker

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

    def start(self, name: str, stage: Mapping[str, Any], index: int,
              params: Mapping[str, Any]) -> str | None:
        tags = {"search.stage": stage["stage"], "search.stage_index": index,
                "search.state": "RUNNING"}
        run_id = self.tracker.start_child(name, tags)
        self.tracker.log_params(name, params)
        return run_id

    def curve(self, name: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        self.tracker.log_metrics(name, {CURVE_PREFIX + k: v for k, v in metrics.items()},
                                 step=int(epoch))

    def finish(self, name: str, figures: Mapping[str, Any], files: list[Path]) -> None:
        self.tracker.log_metrics(name, figures)
        for path in files:
            self.writer.write({"op": "artifact", "key": stage_key(name), "local": str(path),
                               "path": "stage"})
        self.writer.write({"op": "batch", "key": stage_key(name),
                           "tags": {"search.state": "COMPLETE"}})
        self.tracker.end_child(name)

    def fail(self, name: str, reason: str, status: str = "FAILED") -> None:
        self.writer.write({"op": "batch", "key": stage_key(name),
                           "tags": {"search.state": "FAILED", TAG_REASON: reason[:1000]}})
        self.tracker.end_child(name, status)

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

    def register(self, name: str, model_path: Path) -> str | None:
        """The final model as a version of `register_as`, alias `candidate`; the version, or
        None (spooled, or refused: `refused` says why)."""
        if not self.settings.register_as:
            return None
        return self.writer.write({"op": "model", "key": stage_key(name),
                                  "checkpoint": str(model_path),
                                  "name": self.settings.register_as, "alias": CANDIDATE,
                                  "loader": STAGE_LOADER})

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
