"""search/'s name for the error base: `UserError` lives in trainers/errors.py, the lowest layer,
so that `SpaceError` and `TrainerError` derive from the same class (see that module)."""
from __future__ import annotations

from trainers.errors import UserError

__all__ = ["UserError", "one_line", "shown_value"]


def one_line(text: str) -> str:
    """`text` as one printable line: a newline, escape sequence or other control character that
    came from the user (a name, a path, a flag's value) is shown escaped (\\n, \\x1b), so
    a message stays one line and cannot repaint the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown_value(text: str, limit: int = 60) -> str:
    """A user's value for a message: quoted, escaped, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")
