"""The same search on PostgreSQL (what a cluster uses): skipped only if the server is down."""
from __future__ import annotations

import uuid

import optuna
import pytest
from optuna.trial import TrialState

from search.studies import study as studies
from search.errors import UserError
from search.lifecycle.runner import run_search
from search.testing import toy_space

URL = "postgresql://postgres@127.0.0.1:5432/test"
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_storage():
    try:
        storage = studies.open_storage(studies.storage_url(URL, "."))
    except UserError as err:
        pytest.skip(f"PostgreSQL at {URL} is unreachable: {err}")
    name = f"search-test-{uuid.uuid4().hex[:10]}"
    yield storage, name
    if name in studies.study_names(storage):
        optuna.delete_study(study_name=name, storage=storage)


def test_search_on_postgresql(ray_cluster, options, pg_storage):
    storage, name = pg_storage
    space = toy_space(name=name, trials=4, epochs=2, pruner_name="asha",
                      pruner={"grace_period": 1, "reduction_factor": 2})
    outcome = run_search(space, options(storage=URL))
    assert outcome.storage_url == studies.storage_url(URL, ".")
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert all(t.user_attrs["run_id"] == outcome.run_id for t in study.trials)
    again = run_search(space, options(storage=URL))  # the study continues on the server
    assert len(optuna.load_study(study_name=name, storage=storage).trials) == 8
    assert again.exit_code == 0
