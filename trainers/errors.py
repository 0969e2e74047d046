"""The error tree, rooted here because trainers/ is the lowest layer (spaces and search import it,
it imports neither): `UserError` is a user's mistake, whatever layer finds it; `SpaceError`
(spaces/errors.py) and `TrainerError` derive from it, and search/ raises it directly. The command
line prints its one-line message and exits with `exit_code`. Anything else is a bug and keeps its
traceback."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input. `str(err)` is the complete one-line message."""

    exit_code = 2


class TrainerError(UserError):
    """A mistake in the user's input found by the trainer (missing data folder, factory not
    importable, bad checkpoint)."""


class DivergedError(RuntimeError):
    """Training diverged (a non-finite training loss). Not a user error: the hyperparameters
    made this run blow up, and a search records the trial as failed with this reason."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"training diverged in epoch {epoch}: the training loss is {loss}")
        self.epoch = epoch
        self.loss = loss
