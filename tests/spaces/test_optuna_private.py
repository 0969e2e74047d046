"""The private Optuna API spaces/optuna_private.py wraps, pinned to the installed version: an
upgrade that changes one of these calls fails here, by name."""
from __future__ import annotations

import datetime
import inspect

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from spaces import optuna_private as private

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_checked_with_the_installed_version():
    assert optuna.__version__ == private.CHECKED_WITH


def test_the_private_names_keep_their_shape():
    params = inspect.signature(BaseStorage.create_new_trial).parameters
    assert list(params)[:3] == ["self", "study_id", "template_trial"]
    for cls in (FloatDistribution, IntDistribution, CategoricalDistribution):
        assert list(inspect.signature(cls._contains).parameters) == [
            "self", "param_value_in_internal_repr"]
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)
    assert isinstance(study.trials[0]._trial_id, int)
    assert isinstance(study._storage, BaseStorage) and isinstance(study._study_id, int)


def test_contains_follows_bounds_and_step():
    dist = FloatDistribution(0.0, 1.0, step=0.25)
    assert private.contains(dist, 0.5) and not private.contains(dist, 0.3)
    assert not private.contains(IntDistribution(1, 4), 5)
    cat = CategoricalDistribution(["a", "b"])
    assert private.contains(cat, cat.to_internal_repr("b"))


def test_create_trial_and_write_it_back(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="p")
    study.ask()  # ids and numbers differ from the second trial on in a shared storage
    template = FrozenTrial(number=-1, state=TrialState.RUNNING, value=None,
                           datetime_start=datetime.datetime.now(), datetime_complete=None,
                           params={}, distributions={}, user_attrs={"run_id": "r1"},
                           system_attrs={}, intermediate_values={}, trial_id=-1)
    trial = private.create_trial(study, template)
    frozen = study.get_trials(deepcopy=False)[1]
    assert trial.number == 1 and frozen.user_attrs == {"run_id": "r1"}
    assert frozen.state == TrialState.RUNNING
    assert private.trial_id(frozen) == trial._trial_id
    private.writable_trial(study, frozen).set_user_attr("x", 1)
    study.tell(1, 0.5)
    assert study.get_trials(deepcopy=False)[1].user_attrs == {"run_id": "r1", "x": 1}
