"""Errors for a user's mistake found while training (missing data, bad factory, bad checkpoint)."""
from __future__ import annotations


class TrainerError(Exception):
    """A mistake in the user's input found by the trainer. `str(err)` is the whole message."""


class DivergedError(RuntimeError):
    """Training diverged (a non-finite training loss). Not a user error: the hyperparameters
    made this run blow up, and a search records the trial as failed with this reason."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"training diverged in epoch {epoch}: the training loss is {loss}")
        self.epoch = epoch
        self.loss = loss
