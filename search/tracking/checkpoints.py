"""Which trials keep their checkpoint in MLflow: the best k finished ones by the objective.

Pure bookkeeping; the callback turns its answers into artifact uploads and deletions. Pruned and
failed trials are never offered, so they keep nothing. On a tie the earlier trial stays.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TopK:
    k: int
    mode: str = "max"  # "max" | "min", Tune's words
    kept: list[tuple[float, int, str]] = field(default_factory=list)  # (score, order, key)
    _order: int = 0

    def _rank(self, score: float) -> float:
        return -score if self.mode == "max" else score

    def offer(self, key: str, score: float) -> tuple[bool, list[str]]:
        """Whether `key` is kept, and the keys it pushed out of the top k."""
        if self.k <= 0 or score is None or math.isnan(score):
            return False, []
        self._order += 1
        entries = sorted(self.kept + [(score, self._order, key)],
                         key=lambda e: (self._rank(e[0]), e[1]))
        keep, out = entries[:self.k], entries[self.k:]
        self.kept = keep
        return any(e[2] == key for e in keep), [e[2] for e in out if e[2] != key]

    def restore(self, key: str, score: float) -> None:
        """Re-enter a trial kept before a resume, without evicting anything."""
        self._order += 1
        self.kept.append((score, self._order, key))
        self.kept.sort(key=lambda e: (self._rank(e[0]), e[1]))

    @property
    def best(self) -> str | None:
        return self.kept[0][2] if self.kept else None

    def keys(self) -> list[str]:
        return [e[2] for e in self.kept]


MODEL_FILES = ("best.pt", "last.pt", "checkpoint.pt", "model.pt")


def model_file(folder: str | os.PathLike) -> Path | None:
    """The file in a trial's checkpoint folder that holds the model to register: best.pt (the
    selected epoch), else last.pt, else the only *.pt file."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    for name in MODEL_FILES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.pt"))
    return found[0] if len(found) == 1 else None
