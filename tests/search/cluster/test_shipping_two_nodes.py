"""The user's own code on a real two-node cluster whose nodes were started without it on their
path: `search run --address` and `search submit` ship it (search/cluster/shipping.py), and trials on the
worker node import it."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from cluster_helpers import search, space_yaml

pytestmark = [pytest.mark.slow]

FIT_PACKAGE = '''
import importlib, os
from search.testing import known_work_fit

def fit(config, **kw):
    # the data factory the space names is a second user module: import and call it here
    module, _, name = config["data"]["factory"].partition(":")
    assert getattr(importlib.import_module(module), name)() == "{tag}"
    return known_work_fit(config, **kw)
'''


def user_code(root: Path) -> tuple[str, str]:
    """A package (the fit function) and a single-file module (the data factory) in a folder
    only the driver's PYTHONPATH names: (fit reference, data factory reference)."""
    tag = uuid.uuid4().hex[:8]
    package = root / f"userfit_{tag}"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(FIT_PACKAGE.format(tag=tag))
    (package / "runs").mkdir()  # a run folder inside the package is not shipped
    (package / "runs" / "big.bin").write_bytes(b"\0" * 1024)
    (root / f"userdata_{tag}.py").write_text(f"def load():\n    return {tag!r}\n")
    return f"userfit_{tag}.train:fit", f"userdata_{tag}:load"


def user_space(name: str, data_factory: str, trials: int) -> str:
    text = space_yaml(name, trials=trials, tracking=False)
    return text.replace("data: {dataset: digits}",
                        f'data: {{dataset: factory, factory: "{data_factory}"}}')


def driver_env(root: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(root)])}


def test_search_run_ships_the_users_modules_to_the_worker_node(two_nodes, tmp_path):
    fit, data = user_code(tmp_path / "usercode")
    name = f"ship-run-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "space.yaml"
    path.write_text(user_space(name, data, trials=2))
    with two_nodes.meeting():
        done = search("run", str(path), "--address", two_nodes.address, "--plain",
                      "--output", str(tmp_path / "runs"), "--fit", fit,
                      **driver_env(tmp_path / "usercode"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = optuna.load_study(study_name=name,
                              storage=f"sqlite:///{tmp_path / 'runs' / 'study.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert {t.user_attrs["node_id"] for t in study.trials} == two_nodes.node_ids()


@pytest.mark.postgres
def test_search_submit_ships_the_users_modules_with_the_job(two_nodes, pg, tmp_path):
    from cluster_helpers import PG_URL

    fit, data = user_code(tmp_path / "usercode")
    name = pg.name("ship-submit")
    path = tmp_path / "space.yaml"
    path.write_text(user_space(name, data, trials=2))
    with two_nodes.meeting():
        sent = search("submit", str(path), "--address", two_nodes.dashboard, "--storage",
                      PG_URL, "--output", str(tmp_path / "runs"), "--fit", fit, timeout=120,
                      **driver_env(tmp_path / "usercode"))
        assert sent.returncode == 0, sent.stderr[-3000:]
        job = sent.stdout.splitlines()[0]
        followed = search("status", job, "--address", two_nodes.dashboard, "--follow")
    assert followed.stdout.splitlines()[-1].startswith(f"job {job}: SUCCEEDED"), \
        followed.stdout[-3000:]
    trials = optuna.load_study(study_name=name, storage=pg.storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert {t.user_attrs["node_id"] for t in trials} == two_nodes.node_ids()
