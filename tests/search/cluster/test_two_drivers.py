"""Two `search run` drivers at once on one PostgreSQL study (the same space, storage and output
folder, on the two-node cluster): no trial number twice, every trial recorded, each run its
own trials, run folder and MLflow parent."""
from __future__ import annotations

import subprocess
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from cluster_helpers import BIN, FIT, MLFLOW_URI, PG_URL, environment, space_yaml

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_two_drivers_share_one_study_without_duplicate_numbers(two_nodes, pg, tmp_path):
    name = pg.name("two-drivers")
    path = tmp_path / "space.yaml"
    path.write_text(space_yaml(name, trials=4))
    out = tmp_path / "runs"
    argv = [str(BIN / "search"), "run", str(path), "--address", two_nodes.address,
            "--storage", PG_URL, "--tracking-uri", MLFLOW_URI, "--output", str(out),
            "--plain", "--fit", FIT]
    drivers = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=environment()) for _ in range(2)]
    results = [d.communicate(timeout=300) for d in drivers]
    for driver, (stdout, stderr) in zip(drivers, results):
        assert driver.returncode == 0, stderr[-4000:]

    trials = optuna.load_study(study_name=name, storage=pg.storage).trials
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(8)) and len(set(numbers)) == 8
    assert all(t.state == TrialState.COMPLETE for t in trials)
    per_run = Counter(t.user_attrs["run_id"] for t in trials)
    assert sorted(per_run.values()) == [4, 4]  # two runs, each its budget
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("run-")) == \
        sorted(per_run)  # one folder each, though both started at the same second

    from mlflow import MlflowClient

    client = MlflowClient(MLFLOW_URI)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("search.key") == "parent"}
    assert len(parents) == 2
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in parents]
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == list(range(8))
    by_parent = Counter(r.data.tags["mlflow.parentRunId"] for r in children)
    assert sorted(by_parent.values()) == [4, 4]
