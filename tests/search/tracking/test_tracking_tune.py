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

from search.tracking.names import curve_key

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
            steps = [m.step for m in client.get_metric_history(child.info.run_id,
                                                                curve_key(key))]
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
    # parallel coordinates only in the interactive page (as a PNG its axes overlap)
    assert plots == {"optimization_history.png", "param_importances.png",
                     "learning_curves.png", "plots.html"}
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


def test_trial_runs_say_how_they_ended(view, searched):
    """Pruned and complete trials no longer look the same in the runs table: the state is in
    the run's name (and the run's status says FAILED for a failed one)."""
    client, exp, parent, children, cb, run_of = view
    word = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
    names = {}
    for child in children:
        trial = searched["study"].trials[int(child.data.tags["optuna.trial_number"])]
        names[trial.number] = child.info.run_name
        assert child.info.run_name == f"trial-{trial.number:03d} ({word[trial.state.name]})"
        assert child.data.tags["search.kind"] == "trial"
    assert names == {0: "trial-000 (complete)", 1: "trial-001 (complete)",
                     2: "trial-002 (failed)", 3: "trial-003 (pruned)", 4: "trial-004 (pruned)",
                     5: "trial-005 (complete)"}
    assert parent.data.tags["search.kind"] == "search"


def test_the_objective_is_one_value_per_trial(view, searched):
    """`val_accuracy` of a trial run is the value the study got (the selected epoch's; a
    pruned trial's last reported one), logged once; its per-epoch curve is
    `epoch/val_accuracy`."""
    client, exp, parent, children, cb, run_of = view
    for child in children:
        trial = searched["study"].trials[int(child.data.tags["optuna.trial_number"])]
        history = [(m.step, m.value) for m in client.get_metric_history(child.info.run_id,
                                                                          "val_accuracy")]
        if trial.state.name == "FAIL":
            assert history == []
            continue
        assert history == [(0, pytest.approx(trial.value))], trial.number
        curve = client.get_metric_history(child.info.run_id, "epoch/val_accuracy")
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(max(m.value for m in curve))
        else:
            assert trial.value == pytest.approx(curve[-1].value)


def test_only_per_epoch_values_are_curves(view, searched):
    """A metric with a `/` is a curve with one value per epoch; a plain one has one value,
    at step 0; the epoch number and other constants are no metrics."""
    client, exp, parent, children, cb, run_of = view
    for child in children:
        epochs = max(m.step for m in client.get_metric_history(child.info.run_id,
                                                                "epoch/val_accuracy"))
        assert not {"epoch", "batch_size", "final_val_accuracy"} & set(child.data.metrics)
        for key in child.data.metrics:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert steps == (list(range(1, epochs + 1)) if "/" in key else [0]), (key, steps)
        if child.data.tags["search.state"] == "COMPLETE":
            assert {"val_accuracy", "test_accuracy", "selected_epoch"} <= \
                set(child.data.metrics)


def mlflow_chart_sections(keys) -> list[tuple[str, list[str]]]:
    """How MLflow 3.17's UI lays out the charts of runs (RunsChartsCardConfig.
    getBaseChartAndSectionConfigs in its bundle): one section per key prefix before the last
    "/", those sorted first, then "Model metrics" (no prefix) and "System metrics"
    (`system/`); charts sorted by key within."""
    sections: dict[str, list[str]] = {}
    for key in sorted(keys):
        prefix = "/".join(key.split("/")[:-1])
        name = "Model metrics" if prefix == "" else "System metrics" if prefix == "system" \
            else prefix
        sections.setdefault(name, []).append(key.split("/")[-1])
    order = sorted(k for k in sections if k not in ("Model metrics", "System metrics")) + \
        [k for k in ("Model metrics", "System metrics") if k in sections]
    return [(name, sections[name]) for name in order]


def test_a_trials_charts_open_on_its_learning_curves(view, searched):
    """The trial's chart page starts with the learning curves (val_accuracy among the first
    three charts, not 14th of 15), the training diagnostics next, one-value figures last."""
    client, exp, parent, children, cb, run_of = view
    best = client.get_run(run_of(searched["study"].best_trial))
    sections = mlflow_chart_sections(best.data.metrics)
    assert [name for name, _ in sections] == ["epoch", "training", "Model metrics"]
    assert sections[0][1] == ["train_loss", "val_accuracy", "val_loss"]
    assert sections[1][1] == ["epoch_time", "grad_norm", "lr", "samples_per_sec"]
    assert "val_accuracy" in sections[2][1] and "test_accuracy" in sections[2][1]


def test_the_best_version_carries_its_figures(view, searched):
    """The registered version says what it is: its figures and source as tags, a
    description; the registered model explains its aliases; the one logged model is named for
    its trial and is the version's (no failed or unused ones)."""
    client, exp, parent, children, cb, run_of = view
    study, name = searched["study"], cb.settings.register_as
    version = client.get_model_version_by_alias(name, "best")
    best = client.get_run(version.run_id)
    number = study.best_trial.number
    tags = version.tags
    assert float(tags["val_accuracy"]) == pytest.approx(study.best_value, rel=1e-5)
    assert float(tags["test_accuracy"]) == pytest.approx(best.data.metrics["test_accuracy"],
                                                         rel=1e-5)
    assert int(tags["num_params"]) == 64 * 64 + 64 + 64 * 10 + 10  # TinyNet(64)
    assert int(tags["size_bytes"]) > 4 * int(tags["num_params"])
    assert 0 < float(tags["latency_ms_b1"]) < 1000
    assert tags["source"] == f"trial {number}" and tags["search.trial_number"] == str(number)
    assert version.description.startswith(f"Trial {number} of the search ")
    assert "Alias `best`: the search's best trial" in version.description
    assert f"{int(tags['num_params']):,} parameters" in version.description
    model = client.get_registered_model(name)
    assert "`best`" in model.description and "`candidate`" in model.description
    assert model.tags["alias.candidate"].startswith("the model after the last post-search")
    logged = list(client.search_logged_models([exp.experiment_id]))
    assert [(m.name, str(m.status)) for m in logged] == [(f"trial-{number:03d}", "READY")]
    assert version.source == f"models:/{logged[0].model_id}"
