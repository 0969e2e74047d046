"""The end of a search in MLflow: on the parent run a summary table of the top trials
(summary.csv), the best trial's config (best_config.yaml), the figures (plots/), best-trial tags
and trial counts; the best trial's model registered with the alias `best`; the parent ended; the
spool replayed if the backend was away.

With several objectives "best" is the study's (search.studies.study.best_trials): the Pareto front
ordered by the first objective, best = first. The parent then also gets the front as
`pareto_front.csv` and the tag `search.pareto_front` (trial numbers, best first), summary.csv a
`pareto` column, and every front member keeps its checkpoint.

`tracking.keep_checkpoints` = k: the k best finished trials of the search (by the first
objective; plus the front with several) keep their checkpoint in MLflow, and once the search
ended the other trials' local checkpoints are deleted too, so the disk holds what MLflow holds
(and the best trial's, for the stages, even with k = 0).
"""
from __future__ import annotations

import csv
import io
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import plots, versions
from .checkpoints import model_file
from .names import curve_key, is_whole_run, trial_run_name, whole_run_key
from .registry import DEFAULT_LOADER
from .runs import PARENT
from .tracker import (COMPLETE, FAILED, PRUNED, TAG_CKPT, TAG_CKPT_DIR, TAG_NUMBER, TAG_REASON,
                      TAG_SCORE, TAG_STATE, TAG_TUNE_ID, SearchTracker, TrialRecord, _yaml)
from .spool import now_ms

log = logging.getLogger("search.tracking")
SUMMARY_ROWS = 20


@dataclass
class FinishReport:
    """What `finish` did, for the command line to print."""

    best_run_id: str | None = None
    best_score: float | None = None
    model_version: str | None = None
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    spooled: int = 0  # writes still waiting for the backend (`search sync`)


def previous_trials(tracker: SearchTracker) -> None:
    """Add the trials of earlier sessions of a resumed search (known only to MLflow)."""
    if tracker.writer.down:
        return
    book = tracker.writer.book
    try:
        runs = book.children()
    except Exception as err:
        log.warning("tracking: cannot read earlier trials (%s)", err)
        return
    for run in runs:
        tags = run.data.tags
        tune_id = tags.get(TAG_TUNE_ID)
        if not tune_id or tune_id in tracker.trials or tags.get(TAG_STATE) == "RUNNING":
            continue
        number = tags.get(TAG_NUMBER)
        rec = TrialRecord(tune_id, tags["search.key"], params=dict(run.data.params),
                          number=int(number) if number and number.isdigit() else None,
                          run_id=run.info.run_id, state=tags.get(TAG_STATE),
                          reason=tags.get(TAG_REASON, ""), kept=tags.get(TAG_CKPT) == "kept",
                          checkpoint=tags.get(TAG_CKPT_DIR))
        rec.best = float(tags[TAG_SCORE]) if TAG_SCORE in tags else None
        rec.final = dict(run.data.metrics)
        rec.curve = []
        tracker.trials[tune_id] = rec
    for rec in tracker.trials.values():
        # trials of earlier sessions, and resumed trials whose first epochs were logged then
        if (not rec.curve or min(s for s, _ in rec.curve) > 1) and \
                (rec.run_id or book.cached(rec.key)):
            try:
                history = book.client.get_metric_history(rec.run_id or book.cached(rec.key),
                                                         curve_key(tracker.curve_metric))
            except Exception:
                continue
            rec.curve = sorted((m.step, m.value) for m in history)


def ranked(tracker: SearchTracker) -> list[TrialRecord]:
    """Complete trials best first, then pruned (best first), then failed."""
    sign = -1.0 if tracker.mode == "max" else 1.0
    order = {COMPLETE: 0, PRUNED: 1, FAILED: 2}

    def key(rec: TrialRecord):
        scored = rec.best is not None
        return (order.get(rec.state, 3), not scored, sign * rec.best if scored else 0.0,
                rec.number if rec.number is not None else 1 << 30)

    return sorted(tracker.trials.values(), key=key)


def front_of(study: Any) -> list:
    """The study's Pareto front, best first (search.studies.study.best_trials), when it has several
    objectives; [] otherwise."""
    if study is None or len(getattr(study, "directions", ())) < 2:
        return []
    from search.studies.study import best_trials

    return best_trials(study)


def metric_names(study: Any) -> list[str]:
    names = getattr(study, "metric_names", None)
    return list(names) if names else [f"objective_{i}" for i in range(len(study.directions))]


def pareto_csv(tracker: SearchTracker, study: Any, front: list) -> str:
    """The front as a table: rank (best first), trial, every objective, MLflow run, params."""
    by_number = {r.number: r for r in tracker.trials.values() if r.number is not None}
    params = sorted({k for t in front for k in t.params})
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["rank", "optuna_trial", *metric_names(study), "mlflow_run_id", *params])
    for i, t in enumerate(front, 1):
        rec = by_number.get(t.number)
        run_id = (rec.run_id or tracker.writer.book.cached(rec.key) or "") if rec else ""
        w.writerow([i, t.number, *t.values, run_id, *[t.params.get(k) for k in params]])
    return out.getvalue()


def summary_csv(tracker: SearchTracker, rows: int = SUMMARY_ROWS, front: list = ()) -> str:
    records = ranked(tracker)[:rows]
    on_front = {t.number for t in front}
    params = sorted({k for r in records for k in r.params})
    finals = [k for k in ("test_accuracy", "best_val_accuracy", "num_params") if
              any(k in r.final for r in records)]
    out = io.StringIO()
    w = csv.writer(out)
    # objective_<metric>: a complete trial's value as told to Optuna (the selected epoch's), a
    # pruned or failed trial's best reported value
    w.writerow(["rank", "state", f"objective_{tracker.metric}", "epochs", *finals, "optuna_trial",
                "tune_trial_id", "mlflow_run_id", "checkpoint_kept", "reason",
                *(["pareto"] if front else []), *params])
    book = tracker.writer.book
    for i, r in enumerate(records, 1):
        run_id = r.run_id or book.cached(r.key) or ""
        w.writerow([i, r.state, r.best, r.last_step or len(r.curve),
                    *[r.final.get(k) for k in finals], r.number, r.tune_id, run_id,
                    r.kept, r.reason, *([r.number in on_front] if front else []),
                    *[r.params.get(k) for k in params]])
    return out.getvalue()


def trial_model(tracker: SearchTracker, rec: TrialRecord) -> dict:
    """What a registered trial model says of itself (registry.apply_model_op, versions.py):
    its logged model's name, its source, its figures from the trial's last result."""
    number = rec.number if rec.number is not None else rec.tune_id
    figures = {whole_run_key(k): v for k, v in rec.final.items()
               if (is_whole_run(k) or k in ("test_accuracy", "num_params"))
               and isinstance(v, (int, float)) and not isinstance(v, bool)}
    figures = {k: v for k, v in figures.items() if k in (*versions.FIGURES, tracker.metric)}
    if rec.best is not None:
        figures[tracker.metric] = rec.best
    return {"model_name": trial_run_name(rec.number, rec.tune_id), "source": f"trial {number}",
            "about": f"Trial {number} of the search {tracker.name}", "figures": figures,
            "tags": {"search.trial_number": rec.number}}


def _keep_front(tracker: SearchTracker, front: list[TrialRecord]) -> None:
    """Every trial of the Pareto front keeps its checkpoint in MLflow, whatever the top-k by
    the first objective pushed out: each is a best answer for some trade-off."""
    for rec in front:
        if rec.kept or not rec.checkpoint or not Path(rec.checkpoint).exists():
            continue
        tracker.writer.write({"op": "artifact", "key": rec.key, "local": rec.checkpoint,
                              "path": "checkpoint"})
        tracker.writer.write({"op": "batch", "key": rec.key,
                              "tags": {TAG_CKPT: "kept", TAG_CKPT_DIR: rec.checkpoint}})
        rec.kept = True
        tracker.top.restore(rec.key, rec.best)


def _prune_disk(tracker: SearchTracker, kept: set[str], best: TrialRecord | None) -> None:
    """The disk keeps what MLflow keeps (`tracking.keep_checkpoints`): a trial's local
    checkpoints go once the search ended without it in the kept set. The best trial's stay
    whatever k is (the stages start from them); nothing goes while the spool may still upload
    from them."""
    if tracker.writer.down or len(tracker.writer.spool):
        return
    for rec in tracker.trials.values():
        if rec.key in kept or rec is best or not rec.checkpoint:
            continue
        folder = Path(rec.checkpoint)
        folders = sorted(folder.parent.glob("checkpoint_*")) \
            if folder.name.startswith("checkpoint_") else [folder]
        for path in folders:
            shutil.rmtree(path, ignore_errors=True)


def finish(tracker: SearchTracker, *, study: Any = None, folder: Path,
           register_as: str | None = None, loader: str = DEFAULT_LOADER,
           summary_rows: int = SUMMARY_ROWS) -> FinishReport:
    writer, report = tracker.writer, FinishReport()
    if writer.down:
        writer.replay()
    previous_trials(tracker)
    front = front_of(study)
    texts = {"summary.csv": summary_csv(tracker, summary_rows, front)}
    complete = [r for r in ranked(tracker) if r.state == COMPLETE and r.best is not None]
    if front:  # several objectives: the front's order is the order of "best"
        place = {t.number: i for i, t in enumerate(front)}
        complete.sort(key=lambda r: place.get(r.number, len(place)))
        texts["pareto_front.csv"] = pareto_csv(tracker, study, front)
        _keep_front(tracker, complete[:len(front)])
    kept = {k for k in tracker.top.keys()}
    best = complete[0] if complete else None
    if best is not None:
        config = best.config
        if not config and tracker.config_from_params is not None and best.params:
            try:  # a trial of an earlier session: only its params are known here
                config = tracker.config_from_params(best.params)
            except Exception as err:
                log.warning("tracking: cannot resolve the best config (%s)", err)
        texts["best_config.yaml"] = _yaml(config or best.params)
        report.best_run_id = best.run_id or writer.book.cached(best.key)
        report.best_score = best.best
    for path, text in texts.items():
        writer.write({"op": "text", "key": PARENT, "path": path, "text": text})

    folder = Path(folder) / "plots"
    drawn = plots.Drawn()
    if study is not None:
        plots.optuna_plots(study, folder, tracker.metric, drawn)
    else:
        drawn.skipped.update({name: "no Optuna study given" for name in plots.OPTUNA_PLOTS})
    curves = [(f"trial {r.number if r.number is not None else r.tune_id}", r.state or "RUNNING",
               r.curve) for r in tracker.trials.values()]
    best_label = None if best is None else \
        f"trial {best.number if best.number is not None else best.tune_id}"
    # the curves are of val_accuracy unless the tracker was told otherwise: more is better
    # unless they are the objective's and it is minimised, or a loss
    curve_mode = tracker.mode if tracker.curve_metric == tracker.metric else \
        ("min" if "loss" in tracker.curve_metric else "max")
    plots.learning_curves(curves, folder, tracker.curve_metric, best_label, curve_mode, drawn)
    plots.write_page(drawn, folder, f"{tracker.name}: plots")
    report.files, report.skipped = drawn.files, drawn.skipped
    for path in report.files:
        writer.write({"op": "artifact", "key": PARENT, "local": str(path), "path": "plots"})
    if report.skipped:
        writer.write({"op": "text", "key": PARENT, "path": "plots/skipped.txt",
                      "text": "".join(f"{k}: {v}\n" for k, v in report.skipped.items())})

    counts = {s: sum(r.state == s for r in tracker.trials.values())
              for s in (COMPLETE, PRUNED, FAILED)}
    ts = now_ms()
    metrics = [[f"trials_{s.lower()}", n, ts, 0] for s, n in counts.items()]
    tags = {}
    if best is not None:
        metrics.append([f"best_{tracker.metric}", best.best, ts, 0])
        tags = {"search.best_trial": str(best.number), "search.best_tune_id": best.tune_id,
                "search.best_run_id": report.best_run_id or ""}
    if front:
        tags["search.pareto_front"] = ",".join(str(t.number) for t in front)
        tags["search.best_rule"] = "Pareto front ordered by the first objective; best = first"
    writer.write({"op": "batch", "key": PARENT, "metrics": metrics, "tags": tags})

    target = next((r for r in complete if r.key in kept and r.checkpoint), None)
    ckpt = model_file(target.checkpoint) if target is not None else None
    if register_as and ckpt is not None:
        report.model_version = writer.write({"op": "model", "key": target.key,
                                             "checkpoint": str(ckpt), "name": register_as,
                                             "alias": "best", "loader": loader,
                                             **trial_model(tracker, target)})
    elif register_as:
        report.skipped["model"] = "no finished trial kept a checkpoint"
    _prune_disk(tracker, set(tracker.top.keys()), best)
    writer.write({"op": "end", "key": PARENT, "status": "FINISHED", "end_time": now_ms()})
    if writer.down:
        writer.replay()
    report.spooled = len(writer.spool)
    return report
