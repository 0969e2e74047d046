"""What a trial's training ended with, as the search reads it: the failure kinds (known ones end
the trial without a retry), the objective at the selected epoch and the fields of a trial's last
result. Shared by the one-training trial (trainable.py) and its repeated seeds (seeds.py)."""
from __future__ import annotations

import sys
from typing import Any

from search.studies import study as studies
from search.lifecycle.plan import FINAL_METRICS, Objective
from search.tune.keys import FINAL_PREFIX, FINISHED_KEY


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def crash_line(err: BaseException) -> str:
    """one_line, with where the user's code raised it (its innermost frame outside this
    project's packages and the installed ones): what a user needs to find the mistake."""
    import os
    import sysconfig
    import traceback

    ours = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]  # search/
    ours.append(os.path.join(os.path.dirname(ours[0]), "trainers"))
    theirs = {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        path = os.path.abspath(frame.filename)
        if frame.filename.startswith("<") or any(
                p and path.startswith(p + os.sep) for p in (*ours, *theirs)):
            continue
        return f"{one_line(err)} (at {os.path.basename(path)}:{frame.lineno}, in {frame.name})"
    return one_line(err)


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


def clean(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float, str, bool)) or v is None}


def last_epoch_report(history: list[dict] | None) -> dict | None:
    """The report of a run's last epoch, rebuilt from its history: a trial resumed after its
    last epoch reports no epoch, yet its final report must carry the metrics (PBT and the
    schedulers require them in every result)."""
    if not history:
        return None
    return {**clean(history[-1]), "training_iteration": int(history[-1]["epoch"])}


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
