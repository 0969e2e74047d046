"""Every use of Optuna's private API, in one place, pinned by tests/spaces/test_optuna_private.py.

Optuna has no public way to do these; when an Optuna upgrade changes one, the pinned test fails
here rather than a search somewhere in the middle of a run. It lives in spaces/, the lowest layer
that imports Optuna, so that spaces (a distribution's domain) and search (the study's storage)
share it.
"""
from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

# The Optuna version these calls were checked against (constraints.txt pins the same).
CHECKED_WITH = "5.0.0"


def contains(dist: BaseDistribution, internal: float) -> bool:
    """Whether a value in Optuna's internal representation lies in the distribution's domain
    (bounds and step), as Optuna itself decides it."""
    return bool(dist._contains(internal))


def trial_id(frozen: FrozenTrial) -> int:
    """The storage's id of a trial (its `number` counts within the study; the id is global)."""
    return frozen._trial_id


def writable_trial(study: optuna.Study, frozen: FrozenTrial) -> optuna.trial.Trial:
    """A Trial to write user attrs, values or a state to, for a RUNNING trial known only as a
    FrozenTrial (after a restart the Trial objects `ask` returned are gone)."""
    return optuna.trial.Trial(study, trial_id(frozen))


def create_trial(study: optuna.Study, template: FrozenTrial) -> optuna.trial.Trial:
    """A new trial made from `template` (state, user attrs, ...) in one storage transaction,
    returned writable; `study.add_trial` would copy it but give no writable Trial back."""
    new_id: Any = study._storage.create_new_trial(study._study_id, template_trial=template)
    return optuna.trial.Trial(study, new_id)
