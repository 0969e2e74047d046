"""search/'s name for the error base: `UserError` lives in trainers/errors.py, the lowest layer,
so that `SpaceError` and `TrainerError` derive from the same class (see that module)."""
from __future__ import annotations

from trainers.errors import UserError

__all__ = ["UserError"]
