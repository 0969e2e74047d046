"""The k-fold objective (data.kfold = k > 1): k sequential training runs, one per fold.

The folds come from `datasets.kfold_splits`: the train+val samples dealt into k stratified
folds; fold i validates a model trained on the other k - 1, the test split is the usual one.
Every fold trains a fresh model with the same seed (the same initial weights), so folds differ
only by their data, for the whole schedule (no pruning inside a fold).

What a caller sees:
- `report` is not called while the folds train; after the last fold it is called once per
  epoch with the mean over the folds of every metric (a fold stopped early counts up to its
  last epoch), so a tracker gets the usual curves. A k-fold trial cannot be stopped half way.
- FitResult.best_val_accuracy (the objective) is the mean over folds of each fold's best
  validation accuracy; test_accuracy the mean of the folds' test accuracies (each of its own
  best model, measured once); best_epoch the epoch of the highest mean validation accuracy;
  history the per-epoch means; folds the k per-fold results.
- With checkpoint_dir, fold i writes checkpoint_dir/fold<i>/; FitResult.checkpoint is the
  best.pt of the fold with the best validation accuracy. Resuming a k-fold run is not supported.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import TrainerError
from .losses import Task
from .result import FitResult, Report


def mean_history(histories: list[list[dict]]) -> list[dict]:
    """Per-epoch means of every numeric metric over the runs that reached that epoch."""
    out = []
    for e in range(max((len(h) for h in histories), default=0)):
        rows = [h[e] for h in histories if len(h) > e]
        keys = [k for k in rows[0] if all(k in r for r in rows)]
        out.append({k: sum(r[k] for r in rows) / len(rows) for k in keys})
        out[-1]["epoch"] = e + 1
    return out


def fit_kfold(cfg: dict, device: torch.device, train_run: Callable[..., FitResult], *,
              folds=None, report: Report | None = None, checkpoint_dir: str | None = None,
              resume_from: str | None = None, task: Task | None = None,
              model: nn.Module | None = None) -> FitResult:
    """k runs of `train_run` (loop.train_run, handed in by loop.fit: this module stays below
    the loop), one per fold."""
    if resume_from is not None:
        raise TrainerError(f"data.kfold: resuming a k-fold run is not supported (got "
                           f"resume_from={resume_from!r}); start it again or set kfold to 0")
    if folds is None:
        from .datasets import kfold_splits
        folds = kfold_splits(cfg["data"], device=device)
    results = []
    for i in range(len(folds)):
        where = None if checkpoint_dir is None else str(Path(checkpoint_dir) / f"fold{i + 1}")
        results.append(train_run(cfg, folds[i], device, task=task, checkpoint_dir=where,
                                 model=None if model is None else copy.deepcopy(model)))
    history = mean_history([r.history for r in results])
    for metrics in history:
        if report is not None and report(dict(metrics)) is True:
            break
    k = len(results)
    best_fold = max(results, key=lambda r: r.best_val_accuracy)
    return FitResult(
        history=history,
        best_epoch=max(history, key=lambda m: m["val_accuracy"])["epoch"] if history else 0,
        best_val_accuracy=sum(r.best_val_accuracy for r in results) / k,
        test_accuracy=sum(r.test_accuracy for r in results) / k,
        num_params=results[0].num_params, stopped_early=any(r.stopped_early for r in results),
        checkpoint=best_fold.checkpoint, notes=results[0].notes, folds=results,
        split=f"{k}-fold over train+val; test: " + results[0].split.split(";")[0],
        device=results[-1].device)
