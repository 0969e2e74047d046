"""What `fit` returns and the report callable it takes: shared by the single run (loop.py) and
the k-fold objective (kfold.py), which would otherwise import each other."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

Report = Callable[[dict], "bool | None"]  # called after every epoch; True stops training


@dataclass
class FitResult:
    history: list[dict]
    best_epoch: int
    best_val_accuracy: float
    test_accuracy: float
    num_params: int
    stopped_early: bool
    checkpoint: str | None
    notes: list[str] = field(default_factory=list)
    folds: list["FitResult"] = field(default_factory=list)  # data.kfold > 1: one per fold
    device: dict = field(default_factory=dict)  # devices.facts: name, peak GPU memory
    split: str = ""  # where the splits came from: "official test set, validation carved 10% ..."
