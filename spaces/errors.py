"""SpaceError: one line naming the file, line, dotted path, rule, value and a suggestion.

`<file>:<line>: <dotted.path>: <rule>, got <value>[ (did you mean 'x'?)]`
"""
from __future__ import annotations

import difflib
import json
import math
from typing import Any, Iterable

from trainers.errors import UserError


class _Missing:
    def __repr__(self) -> str:
        return "nothing"


MISSING: Any = _Missing()  # "no value was given" (distinct from an explicit null)


class SpaceError(UserError):
    """A mistake in a space file. The fields stay available for callers and tests."""

    def __init__(self, rule: str, *, path: str = "", value: Any = MISSING,
                 file: str | None = None, line: int | None = None,
                 suggestion: str | None = None, show_value: bool = True) -> None:
        self.rule, self.path, self.value = rule, path, value
        self.file, self.line, self.suggestion = file, line, suggestion
        where = ""
        if file is not None or line is not None:
            where = f"{file if file is not None else '<string>'}" + (f":{line}" if line else "")
            where += ": "
        text = f"{where}{path + ': ' if path else ''}{rule}"
        if show_value:
            text += f", got {show(value)}"
        if suggestion is not None:
            text += f" (did you mean {show(suggestion)}?)"
        super().__init__(text.replace("\n", " "))


class Raw(str):
    """Text shown as it is after "got" (e.g. "low=2, high=1"), not quoted like a value."""


def show(value: Any, limit: int = 80) -> str:
    """A value as a user wrote it in YAML: 'text', true, null, 0.001, [0.9, 0.999]."""
    if value is MISSING:
        return "nothing"
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, float) and not math.isfinite(value):
        text = str(value)
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, (list, tuple, dict)):
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    else:
        text = f"{value!r} (a {type(value).__name__})"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def suggest(word: Any, candidates: Iterable[Any]) -> str | None:
    """The closest candidate to a misspelt name, or None when nothing is close."""
    if not isinstance(word, str):
        return None
    pool = {str(c).lower(): str(c) for c in candidates}
    hits = difflib.get_close_matches(word.lower(), list(pool), n=1, cutoff=0.6)
    return pool[hits[0]] if hits else None
