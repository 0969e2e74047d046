"""A real Ray Tune search (ASHA, an ask/tell Optuna study, a trial that raises) recorded by the
tracking callback into three backends at once: the SQLite default, PostgreSQL and a real
`mlflow server`. Read back with MlflowClient, as a user would."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

# Deterministic trials, run one at a time so ASHA's decisions are fixed: the first two
# complete (the second better), the third raises in epoch 2, the sgd ones learn slowly and are
# pruned at the rung (epoch 2), the last is the best.
ENQUEUED = [
    {"optimizer.lr": 1e-3, "optimizer.name": "adamw", "model.width": 16},
    {"optimizer.lr": 1e-2, "optimizer.name": "adamw", "model.width": 32},
    {"optimizer.lr": 1e-2, "optimizer.name": "adamw", "model.width": 8},  # raises
    {"optimizer.lr": 1e-4, "optimizer.name": "sgd", "optimizer.momentum": 0.0,
     "model.width": 8},
    {"optimizer.lr": 1.2e-4, "optimizer.name": "sgd", "optimizer.momentum": 0.0,
     "model.width": 8},
    {"optimizer.lr": 1e-2, "optimizer.name": "adamw", "model.width": 64},
]
EXPLODE = {"optimizer.name": "adamw", "model.width": 8}
EPOCHS = 4
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "lr", "grad_norm", "epoch_time",
                 "samples_per_sec")


def run_search(tmp: Path, space, backends: dict[str, str | None], ray_cluster):
    """One Tune run with a tracking callback per backend; returns (results, study, callbacks)."""
    import ray.cloudpickle
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    import tracking_helpers
    from search.studies import study as studies
    from search.tune.searcher import StudySearcher, trial_dirname
    from search.tracking import make_tracking

    ray.cloudpickle.register_pickle_by_value(tracking_helpers)  # workers lack the tests' path
    url = f"sqlite:///{tmp / 'study.db'}"
    study = studies.open_study(studies.open_storage(url), space.name, ["maximize"])
    for params in ENQUEUED:
        study.enqueue_trial(params)
    searcher = StudySearcher(space, storage_url=url, study_name=space.name, run_id="run-1",
                             objectives=space.objectives, max_trials=len(ENQUEUED),
                             experiment_dir=str(tmp / "out" / "run-1"))
    # An Optuna trial has one `mlflow_run_id`: the first backend's callback sets it; the others
    # record their run ids through `set_run_id` in `links` (tune trial id -> run id).
    links: dict[str, dict] = {name: {} for name in backends}
    callbacks = {name: make_tracking(space, output_dir=tmp / f"out-{name}", run_id="run-1",
                                     tracking_uri=uri, study=searcher.study,
                                     trial_number=searcher.number_of,
                                     set_run_id=None if i == 0 else links[name].__setitem__,
                                     loader="tracking_helpers:load_digits_model")
                 for i, (name, uri) in enumerate(backends.items())}
    tuner = tune.Tuner(
        tracking_helpers.make_trainable(space, explode=EXPLODE),
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=len(ENQUEUED), max_concurrent_trials=1,
            reuse_actors=True, trial_dirname_creator=trial_dirname,
            scheduler=ASHAScheduler(metric="val_accuracy", mode="max", max_t=EPOCHS,
                                    grace_period=2, reduction_factor=2)),
        run_config=tune.RunConfig(name="run-1", storage_path=str(tmp / "out"), verbose=0,
                                  callbacks=list(callbacks.values()),
                                  failure_config=tune.FailureConfig(max_failures=0),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    results = tuner.fit()
    first = next(iter(backends))
    for t in searcher.study.trials:
        links[first][t.user_attrs["tune_trial_id"]] = t.user_attrs.get("mlflow_run_id")
    return results, searcher.study, callbacks, links


@pytest.fixture(scope="module")
def searched(tmp_path_factory, ray_cluster, mlflow_server, request):
    from search.testing import toy_space

    try:
        pg = request.getfixturevalue("pg_uri")
    except pytest.skip.Exception:
        pg = None
    tmp = tmp_path_factory.mktemp("tune")
    name = f"digits-{uuid.uuid4().hex[:8]}"  # unique in shared backends (PostgreSQL)
    space = toy_space(name=name, epochs=EPOCHS, trials=len(ENQUEUED), sampler={"seed": 0},
                      tracking={"experiment": f"{name}-exp", "keep_checkpoints": 1,
                               "register_as": f"{name}-model"})
    backends = {"sqlite": None, "server": mlflow_server.uri}
    if pg:
        backends["postgres"] = pg
    (tmp / "out-sqlite").mkdir()  # the default store, its tables made once per session
    shutil.copy(request.getfixturevalue("_template_db"), tmp / "out-sqlite" / "mlflow.db")
    results, study, callbacks, links = run_search(tmp, space, backends, ray_cluster)
    return {"results": results, "study": study, "callbacks": callbacks, "space": space,
            "tmp": tmp, "links": links}


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "server"]


@pytest.fixture(params=BACKENDS)
def view(request, searched):
    """(client, experiment, parent run, child runs, callback, run id of an Optuna trial) of one
    backend."""
    from mlflow import MlflowClient

    cb = searched["callbacks"].get(request.param)
    if cb is None:
        pytest.skip(f"{request.param}: backend unavailable (see the pg_uri fixture's reason)")
    client = MlflowClient(cb.settings.uri, registry_uri=cb.settings.uri)
    exp = client.get_experiment_by_name(cb.settings.experiment)
    parents = client.search_runs([exp.experiment_id],
                                 filter_string="tags.`search.key` = 'parent'")
    parents = [p for p in parents if p.data.tags["search.id"] == cb.settings.search_id]
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    links = searched["links"][request.param]

    def run_of(trial) -> str:
        return links[trial.user_attrs["tune_trial_id"]]

    return client, exp, parent, children, cb, run_of


def _tune_trials(searched):
    return {r.metrics["trial_id"]: r for r in searched["results"]}


def test_the_search_ran_as_planned(searched):
    states = [t.state.name for t in searched["study"].trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED", "PRUNED", "COMPLETE"]
    assert all(cb.report is not None for cb in searched["callbacks"].values())


def test_one_parent_and_one_child_per_trial(view, searched):
    client, exp, parent, children, cb, run_of = view
    assert len(children) == len(ENQUEUED)
    assert len({c.data.tags["tune.trial_id"] for c in children}) == len(ENQUEUED)
    assert parent.info.status == "FINISHED"
    if cb.settings.artifact_location:  # a database backend: our explicit folder
        assert exp.artifact_location == cb.settings.artifact_location
        assert exp.artifact_location.startswith("file://")


def test_child_states_match_the_study(view, searched):
    client, exp, parent, children, cb, run_of = view
    study = searched["study"]
    word = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAIL": "FAILED"}
    for child in children:
        number = int(child.data.tags["optuna.trial_number"])
        trial = study.trials[number]
        assert child.data.tags["search.state"] == word[trial.state.name]
        assert run_of(trial) == child.info.run_id
        assert child.info.status == ("FAILED" if trial.state.name == "FAIL" else "FINISHED")
        # sampled values as params, dotted names, as YAML writes them
        assert child.data.params == {k: v if isinstance(v, str) else json.dumps(v)
                                     for k, v in trial.params.items()}
    failed = [c for c in children if c.data.tags["search.state"] == "FAILED"]
    assert len(failed) == 1 and "exploding on purpose" in failed[0].data.tags["search.reason"]
    pruned = [c for c in children if c.data.tags["search.state"] == "PRUNED"]
    assert all("stopped by the scheduler" in c.data.tags["search.reason"] for c in pruned)


def test_every_epoch_is_logged_once(view, searched):
    client, exp, parent, children, cb, run_of = view
    tune_trials = _tune_trials(searched)
    for child in children:
        result = tune_trials[child.data.tags["tune.trial_id"]]
        epochs = int(result.metrics.get("training_iteration") or 0)
        if child.data.tags["search.state"] == "FAILED":
            epochs = 1  # reported epoch 1, raised in epoch 2
        assert not [k for k in child.data.metrics if k.startswith("config")
                    or k in ("training_iteration", "time_total_s", "done")]
        for key in EPOCH_METRICS:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert steps == list(range(1, epochs + 1)), (key, steps)
        if child.data.tags["search.state"] == "COMPLETE":
            assert epochs == EPOCHS
            assert child.data.metrics["test_accuracy"] == pytest.approx(
                result.metrics["test_accuracy"])


def test_best_k_trials_keep_their_checkpoint(view, searched):
    client, exp, parent, children, cb, run_of = view
    study = searched["study"]
    with_ckpt = [c for c in children
                 if any(a.path == "checkpoint" for a in client.list_artifacts(c.info.run_id))]
    assert len(with_ckpt) == 1  # keep_checkpoints: 1
    best = study.best_trial
    assert with_ckpt[0].info.run_id == run_of(best)
    files = {Path(a.path).name for a in client.list_artifacts(with_ckpt[0].info.run_id,
                                                             "checkpoint")}
    assert {"best.pt", "last.pt"} <= files
    # a complete trial pushed out of the top k lost its checkpoint again
    others = [c for c in children if c.data.tags["search.state"] == "COMPLETE"
              and c.info.run_id != with_ckpt[0].info.run_id]
    for c in others:
        assert c.data.tags.get("search.checkpoint") in (None, "deleted")


def test_parent_records_settings_and_provenance(view, searched):
    client, exp, parent, children, cb, run_of = view
    tags, params = parent.data.tags, parent.data.params
    assert params["train.epochs"] == str(EPOCHS)
    assert params["search.sampler.name"] == "tpe"
    assert "optimizer.lr" not in params or params["optimizer.lr"] == "0.01"
    for package in ("torch", "optuna", "ray", "mlflow"):
        assert tags[f"versions.{package}"]
    assert tags["search.sampler"] == "tpe" and tags["search.pruner"] == "none"
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert tags["mlflow.source.git.commit"] == head.stdout.strip()
    assert parent.data.metrics["trials_failed"] == 1
    assert tags["search.best_run_id"] == run_of(searched["study"].best_trial)


def test_parent_artifacts(view, searched):
    client, exp, parent, children, cb, run_of = view
    run_id = parent.info.run_id
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"summary.csv", "best_config.yaml", "plots"} <= names
    plots = {Path(a.path).name for a in client.list_artifacts(run_id, "plots")}
    assert {"optimization_history.png", "parallel_coordinate.png", "param_importances.png",
            "learning_curves.png"} <= plots
    dest = searched["tmp"] / f"download-{run_id}"
    dest.mkdir()
    folder = Path(client.download_artifacts(run_id, "", str(dest)))
    rows = list(csv.DictReader(io.StringIO((folder / "summary.csv").read_text())))
    assert len(rows) == len(ENQUEUED)
    assert rows[0]["state"] == "COMPLETE"
    study = searched["study"]
    assert int(rows[0]["optuna_trial"]) == study.best_trial.number
    best_config = yaml.safe_load((folder / "best_config.yaml").read_text())
    assert best_config == searched["space"].config_from_params(study.best_trial.params)


def test_registered_model_reproduces_the_logged_test_accuracy(view, searched):
    import mlflow.pytorch
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from tracking_helpers import accuracy, digits_splits

    client, exp, parent, children, cb, run_of = view
    name = cb.settings.register_as
    version = client.get_model_version_by_alias(name, "best")
    best_child = client.get_run(version.run_id)
    assert version.run_id == run_of(searched["study"].best_trial)
    assert cb.report.model_version == str(version.version)
    with _use_tracking_uri(cb.settings.uri):
        model = mlflow.pytorch.load_model(f"models:/{name}@best")
    test = digits_splits()["test"]  # built here, as any user of the model would
    assert accuracy(model, test) == pytest.approx(best_child.data.metrics["test_accuracy"],
                                                  abs=1e-9)
