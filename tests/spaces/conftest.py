"""Optuna quiet during the space tests (it logs every in-memory study at INFO)."""
from __future__ import annotations

import optuna
import pytest


@pytest.fixture(autouse=True)
def _quiet_optuna():
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)
