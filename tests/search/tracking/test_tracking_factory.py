"""The integration point with a real space file, the registry with a real trainer checkpoint,
and the `search ui` / `search sync` commands."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from search.errors import UserError


def _quickstart():
    from spaces import load_space, shipped

    path = shipped("quickstart")
    return load_space(path), path


def test_make_tracking_records_a_real_space(tmp_path, sqlite_uri, unique):
    from mlflow import MlflowClient

    from search.tracking import make_tracking

    space, path = _quickstart()
    cb = make_tracking(space, output_dir=tmp_path, run_id=unique, space_path=path)
    assert cb.settings.uri == sqlite_uri  # the default: <output>/mlflow.db
    assert cb.settings.experiment == space.name and cb.settings.register_as == space.name
    assert cb.settings.metric == "val_accuracy" and cb.settings.mode == "max"
    assert cb.settings.keep_checkpoints == space.tracking.keep_checkpoints
    assert (tmp_path / "tracking" / unique / "settings.json").is_file()
    client = MlflowClient(sqlite_uri)
    parent = client.get_run(cb.tracker.parent_id)
    params, tags = parent.data.params, parent.data.tags
    searched = {p.path for p in space.params}
    assert "optimizer.lr" in searched and "optimizer.lr" not in params
    fixed = space.fixed
    assert params["data.dataset"] == fixed["data"]["dataset"]
    assert params["train.epochs"] == str(fixed["train"]["epochs"])
    assert params["search.budget.trials"] == str(space.budget.trials)
    assert params["search.searched"] == ", ".join(p.name for p in space.params)
    assert tags["search.space_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert tags["search.sampler"] == space.sampler.name
    assert tags["mlflow.runName"] == f"{space.name} {unique}"
    exp = client.get_experiment(parent.info.experiment_id)
    assert exp.artifact_location == (tmp_path / "mlartifacts").as_uri()
    # MLflow 3 opens a "custom_model_development" experiment on its runs, not on GenAI traces;
    # the objective is its primary metric; its description says how the runs are laid out
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.tags["mlflow.experiment.primaryMetric.name"] == "val_accuracy"
    assert exp.tags["mlflow.experiment.primaryMetric.greaterIsBetter"] == "true"
    assert "trial-NNN" in exp.tags["mlflow.note.content"]
    assert tags["search.kind"] == "search"
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"space.yaml", "space_file"} <= names
    text = Path(client.download_artifacts(parent.info.run_id, "space.yaml",
                                          str(tmp_path))).read_text()
    assert text == space.to_yaml()
    # resuming the same run reattaches to its parent
    again = make_tracking(space, output_dir=tmp_path, run_id=unique, space_path=path,
                          resume=True)
    assert again.tracker.parent_id == cb.tracker.parent_id


def test_an_older_experiment_gets_the_kind_but_keeps_a_users_tags(tmp_path, sqlite_uri,
                                                                   unique):
    """An experiment made before (by MLflow, a user or an older version) is marked as model
    training when it says nothing; what a user set stays."""
    from mlflow import MlflowClient

    from search.tracking.runs import Book

    client = MlflowClient(sqlite_uri)
    exp_id = client.create_experiment(unique, tags={"mlflow.note.content": "mine"})
    book = Book(sqlite_uri, unique, None, "s1",
                experiment_tags={"mlflow.experimentKind": "custom_model_development",
                                 "mlflow.note.content": "ours"})
    assert book.experiment_id == exp_id
    tags = client.get_experiment(exp_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"] == "mine"


def test_tracking_disabled_gives_no_callback(tmp_path):
    from search.testing import toy_space
    from search.tracking import make_tracking

    assert make_tracking(toy_space(tracking={"enabled": False}), output_dir=tmp_path) is None
    assert not (tmp_path / "tracking").exists()


def test_unreachable_backend_fails_before_anything_is_written(tmp_path):
    from tracking_helpers import free_port

    from search.testing import toy_space
    from search.tracking import make_tracking

    space = toy_space(tracking={"uri": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(UserError, match="unreachable"):
        make_tracking(space, output_dir=tmp_path)
    assert not (tmp_path / "tracking").exists()


def test_registry_rebuilds_a_trainer_checkpoint(tmp_path, sqlite_uri):
    """A real trainers.fit checkpoint → build_model + state_dict → registered as pt2 →
    loaded back, it scores the trainer's test accuracy on the trainer's test split."""
    import mlflow.pytorch
    import torch

    from search.tracking.registry import _use_tracking_uri, apply_model_op
    from search.tracking.runs import Book
    from trainers import fit
    from trainers.datasets import load_data

    config = {"data": {"dataset": "digits"}, "model": {"name": "mlp", "width": 32, "depth": 1},
              "train": {"epochs": 2, "threads": 1}}
    result = fit(config, checkpoint_dir=str(tmp_path / "ckpt"))
    book = Book(sqlite_uri, "registry", (tmp_path / "art").as_uri(), "s1")
    book.ensure("trial/t", "trial", {}, None)
    op = {"op": "model", "key": "trial/t", "checkpoint": result.checkpoint, "name": "digits-mlp",
          "alias": "best"}
    version = apply_model_op(book, op)
    assert apply_model_op(book, op) == version  # idempotent: no second version
    mv = book.client.get_model_version_by_alias("digits-mlp", "best")
    assert str(mv.version) == version and mv.tags["serialization_format"] == "pt2"
    with _use_tracking_uri(sqlite_uri):
        model = mlflow.pytorch.load_model("models:/digits-mlp@best")
    test = load_data(config["data"]).test
    with torch.no_grad():
        accuracy = float((model(test.x).argmax(1) == test.y).float().mean())
    assert accuracy == pytest.approx(result.test_accuracy, abs=1e-6)


def test_a_fallback_leaves_one_named_logged_model(tmp_path, sqlite_uri):
    """Registering a model torch.export cannot trace: the pt2 attempt leaves no "Failed"
    logged model behind, the one kept is named for what it is and carries its figures."""
    from search.tracking.registry import apply_model_op
    from search.tracking.runs import Book

    book = Book(sqlite_uri, "registry", (tmp_path / "art").as_uri(), "s3")
    run_id = book.ensure("trial/t", "trial-004", {}, None)
    op = {"op": "model", "key": "trial/t", "checkpoint": str(tmp_path / "none.pt"),
          "name": "branchy", "alias": "best", "loader": "tracking_helpers:load_branchy",
          "model_name": "trial-004", "source": "trial 4", "about": "Trial 4 of a test",
          "figures": {"val_accuracy": 0.5, "test_accuracy": 0.25},
          "tags": {"search.trial_number": 4}}
    version = apply_model_op(book, op)
    models = list(book.client.search_logged_models([book.experiment_id]))
    assert [(m.name, str(m.status)) for m in models] == [("trial-004", "READY")]
    mv = book.client.get_model_version("branchy", version)
    assert mv.source == f"models:/{models[0].model_id}" and mv.run_id == run_id
    assert mv.tags["serialization_format"] == "pickle" and mv.tags["source"] == "trial 4"
    assert mv.tags["val_accuracy"] == "0.5" and mv.tags["search.trial_number"] == "4"
    assert int(mv.tags["num_params"]) == 650 and int(mv.tags["size_bytes"]) > 650 * 4
    assert float(mv.tags["latency_ms_b1"]) > 0
    assert mv.description.startswith("Trial 4 of a test. Alias `best`: the search's best")
    assert "650 parameters" in mv.description and "Serialised as pickle" in mv.description
    model = book.client.get_registered_model("branchy")
    assert "`best`" in model.description and "`candidate`" in model.description
    assert set(model.tags) >= {"alias.best", "alias.candidate"}


def test_registry_falls_back_to_pickle_when_export_fails(tmp_path, sqlite_uri):
    import torch

    from search.tracking.registry import _use_tracking_uri, log_model
    from search.tracking.runs import Book
    from tracking_helpers import Branchy

    book = Book(sqlite_uri, "registry", (tmp_path / "art").as_uri(), "s2")
    run_id = book.ensure("trial/t", "trial", {}, None)
    model, example = Branchy().eval(), torch.randn(2, 64)
    info, fmt = log_model(sqlite_uri, run_id, model, example, {})
    assert fmt == "pickle"
    import mlflow.pytorch

    with _use_tracking_uri(sqlite_uri):
        loaded = mlflow.pytorch.load_model(info.model_uri)
    for x in (example, -example.abs()):
        assert torch.allclose(loaded(x), model(x))


def test_sync_command_errors(tmp_path, capsys):
    from search.cli import main

    assert main(["sync", "--output", str(tmp_path)]) == 2
    assert "no tracked search here" in capsys.readouterr().err


def test_ui_command_serves_the_search(tmp_path, sqlite_uri, unique):
    from tracking_helpers import free_port

    from search.testing import toy_space
    from search.tracking import make_tracking

    make_tracking(toy_space(name=unique, tracking={"enabled": True}), output_dir=tmp_path,
                  run_id="run-1")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "ui", "--output", str(tmp_path),
                             "--port", str(port)], stdout=subprocess.PIPE, text=True, env=env,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        lines = []
        for line in proc.stdout:  # the server's own lines come first; ours once it answers
            lines.append(line)
            if line.startswith("MLflow UI:"):
                break
        assert lines[-1].startswith(f"MLflow UI: http://127.0.0.1:{port}"), lines
        # by default the server listens on loopback only
        bound = [ln.split()[3] for ln in subprocess.run(["ss", "-ltnH"], capture_output=True,
                                                        text=True).stdout.splitlines()
                 if ln.split()[3].endswith(f":{port}")]
        assert bound == [f"127.0.0.1:{port}"], bound
        url = (f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?"
               f"experiment_name={unique}")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert unique in response.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the command stops its server
        assert proc.wait(timeout=60) == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            time.sleep(0.2)
        except OSError:
            return
    pytest.fail("the server outlived `search ui`")
