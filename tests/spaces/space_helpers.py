"""Shared helpers of the space-language tests (a unique module name: conftest.py is taken)."""
from __future__ import annotations

import textwrap

import pytest

from spaces import SpaceError, load_space


def load(text: str, name: str = "t.yaml"):
    """A Space from indented YAML text (dedented here)."""
    return load_space(textwrap.dedent(text), filename=name)


def error_of(text: str, name: str = "t.yaml") -> SpaceError:
    with pytest.raises(SpaceError) as info:
        load(text, name)
    return info.value
