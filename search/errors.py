"""The one exception type for a user's mistake, whatever layer finds it.

Everything that a user can get wrong (the space file, a name, a path, a missing dataset, a study
that does not exist) raises a subclass of UserError; the command line prints its one-line message
and exits 2. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input. `str(err)` is the complete one-line message."""

    exit_code = 2
