"""A search across a real two-node Ray cluster: trials on both nodes, every trial in the
PostgreSQL study and in MLflow (PostgreSQL backend), trial folders in the shared storage."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from cluster_helpers import FIT, MLFLOW_URI, PG_URL, search, space_yaml

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_a_search_runs_on_both_nodes_and_records_every_trial(two_nodes, pg, tmp_path):
    name = pg.name("two-nodes")
    path = tmp_path / "space.yaml"
    path.write_text(space_yaml(name, trials=4))
    shared = tmp_path / "runs"  # one host: both nodes see it (Tune's storage_path)

    with two_nodes.meeting():
        done = search("run", str(path), "--address", two_nodes.address, "--storage", PG_URL,
                      "--tracking-uri", MLFLOW_URI, "--output", str(shared), "--plain",
                      "--fit", FIT)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "4 complete" in done.stdout

    trials = optuna.load_study(study_name=name, storage=pg.storage).trials
    assert [t.number for t in trials] == list(range(4))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    ran_on = {t.number: t.user_attrs["node_id"] for t in trials}
    assert set(ran_on.values()) == two_nodes.node_ids()  # both nodes, and only this cluster's

    # MLflow: one parent, one finished child per study trial, children from both nodes
    from mlflow import MlflowClient

    client = MlflowClient(MLFLOW_URI)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    parents = [r for r in runs if r.data.tags.get("search.key") == "parent"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") ==
                parents[0].info.run_id]
    numbers = sorted(int(r.data.tags["optuna.trial_number"]) for r in children)
    assert numbers == list(range(4))
    assert all(r.data.tags["search.state"] == "COMPLETE" and r.info.status == "FINISHED"
               for r in children)
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == {r.info.run_id for r in children}
    assert {ran_on[int(r.data.tags["optuna.trial_number"])] for r in children} == \
        set(ran_on.values())

    # the run's folder in the shared storage holds every trial's folder and its run file
    run_dir = shared / trials[0].user_attrs["run_id"]
    info = json.loads((run_dir / "search_run.json").read_text())
    assert info["state"] == "finished" and info["study_name"] == name
    assert info["mlflow_run_id"] == parents[0].info.run_id
    assert all((run_dir / f"trial_{t.user_attrs['tune_trial_id']}").is_dir() for t in trials)
