"""Stage runs in MLflow (search/tracking/stages.py): reattaching to a search run through its
saved settings, children of its parent, and the spool while the backend is unreachable, replayed
by `search sync` with the final model registered as `candidate` then."""
from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from search.tracking import sync
from search.tracking.settings import Settings
from search.tracking.stages import StageLog
from search.tracking.tracker import SearchTracker

FIGURES = {"test_accuracy": 0.9, "val_accuracy": 0.91, "params": 610.0, "size_bytes": 4800.0,
           "latency_ms_b1": 0.05, "latency_ms_b64": 0.2, "throughput_b64": 3.2e5}
# in MLflow under the trials' names: a stage's parameter count shares the trials' column
LOGGED = {("num_params" if k == "params" else k): v for k, v in FIGURES.items()}


def tracked_search(tmp_path: Path, uri: str, name: str) -> str:
    """A search run as make_tracking leaves it: settings saved, the parent run made."""
    settings = Settings(uri=uri, experiment=name,
                        artifact_location=(tmp_path / "mlartifacts").as_uri(),
                        search_id=f"run-1@{name}", name=name, output_dir=str(tmp_path),
                        run_id="run-1", metric="val_accuracy", register_as=name)
    settings.save()
    tracker = SearchTracker(settings.writer(), name=f"{name} run-1", metric="val_accuracy")
    return tracker.start(params={"search.seed": 0}, tags={})


def stage_model_file(folder: Path, kind: str = "int8_static") -> Path:
    """A real stage file written by trainers.stages: a small digits CNN (fused conv+relu and
    a hidden head layer, like the quickstart's student), quantised."""
    from trainers.loop import resolve_config
    from trainers.stages import StageModel, run_stage, save_stage_model
    from trainers.stages.model import build_float, dims_of

    config = resolve_config({"data": {"dataset": "digits"},
                             "model": {"name": "cnn", "width": 4, "depth": 1, "hidden": 16}})
    dims = dims_of(config)
    sm = StageModel(config, build_float(config, dims).eval(), "float32",
                    {"dims": dims, "steps": [], "notes": []})
    stage = {"stage": "quantize", "mode": kind}
    if kind != "float16":
        stage["backend"] = "x86"
    if kind == "int8_static":
        stage["calibration_batches"] = 2
    return save_stage_model(run_stage(stage, sm), folder / "model.pt")


def test_no_tracked_search_no_stage_log(tmp_path):
    assert StageLog.open(tmp_path, "run-1") is None


def test_stage_children_of_the_parent(tmp_path, sqlite_uri, unique):
    """Stage runs sit apart from the trials, under one `stages` run of the search; their
    curves and figures have the trials' names, so that both share charts and columns."""
    parent = tracked_search(tmp_path, sqlite_uri, unique)
    log = StageLog.open(tmp_path, "run-1")  # a later process: reattached by the saved settings
    assert log is not None and not log.writer.down
    run_id = log.start("1-finetune", {"stage": "finetune", "epochs": 2}, 1, {"epochs": 2})
    for epoch in (1, 2):  # trainers.fit's per-epoch report, as the pipeline forwards it
        log.curve("1-finetune", epoch, {"val_accuracy": 0.5 + epoch / 10, "train_loss": 1.0,
                                        "lr": 0.01, "batch_size": 64, "epoch_time": 0.5})
    log.finish("1-finetune", FIGURES, [])
    log.done()
    client = MlflowClient(sqlite_uri)
    run = client.get_run(run_id)
    group = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert group.info.run_name == "stages" and group.data.tags["search.kind"] == "stages"
    assert group.data.tags["mlflow.parentRunId"] == parent
    assert group.info.status == "FINISHED"
    assert run.data.tags["search.stage"] == "finetune" and run.data.tags["search.kind"] == \
        "stage"
    assert run.data.tags["search.stage_index"] == "1"
    assert run.info.run_name == "1-finetune" and run.info.status == "FINISHED"
    assert run.data.params == {"epochs": "2"} and run.data.metrics == {
        **LOGGED, "epoch/val_accuracy": 0.7, "epoch/train_loss": 1.0, "training/lr": 0.01,
        "training/epoch_time": 0.5}  # the batch size is a constant, not a metric
    assert [m.step for m in client.get_metric_history(run_id, "epoch/val_accuracy")] == [1, 2]
    assert [m.step for m in client.get_metric_history(run_id, "num_params")] == [0]

    # a later pipeline reopens the group; a failed stage fails it
    again = StageLog.open(tmp_path, "run-1")
    failed = again.start("2-distill", {"stage": "distill"}, 2, {"epochs": 1})
    assert client.get_run(group.info.run_id).info.status == "RUNNING"
    again.fail("2-distill", "RuntimeError: out of luck")
    bad = client.get_run(failed)
    assert bad.info.status == "FAILED" and bad.data.tags["search.reason"] == \
        "RuntimeError: out of luck"
    assert bad.data.tags["mlflow.parentRunId"] == group.info.run_id
    assert client.get_run(group.info.run_id).info.status == "FAILED"


def test_backend_down_spools_stages_and_sync_replays_them(tmp_path, sqlite_uri, unique, capfd):
    from tracking_helpers import free_port

    parent = tracked_search(tmp_path, sqlite_uri, unique)
    model = stage_model_file(tmp_path / "stages" / "1-quantize")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    log = StageLog.open(tmp_path, "run-1", tracking_uri=dead)
    assert log.writer.down
    assert log.start("1-quantize", {"stage": "quantize"}, 1, {"mode": "int8_dynamic"}) is None
    log.finish("1-quantize", FIGURES, [model])
    result = {"stage": {"stage": "quantize", "mode": "int8_static"}, "kind": "int8_static",
              "figures": FIGURES, "source_trial": 3}
    assert log.register("1-quantize", model, result) is None
    log.done()
    # the stages run, the stage run, params, metrics, artifact, state tag, end, the model, the
    # end of the stages run
    assert log.spooled == 9
    client = MlflowClient(sqlite_uri, registry_uri=sqlite_uri)
    assert not [r for r in client.search_runs([client.get_experiment_by_name(unique)
                                               .experiment_id])
                if "search.stage" in r.data.tags]

    capfd.readouterr()
    [(_, applied, left)] = sync(tmp_path, tracking_uri=sqlite_uri)  # `search sync`
    assert left == 0 and applied == 9
    # the formats tried before torchscript fail quietly (MLflow warned of each, with a
    # traceback-like message, in earlier versions of this code)
    assert "Failed to validate" not in "".join(capfd.readouterr())
    exp_id = client.get_experiment_by_name(unique).experiment_id
    [child] = [r for r in client.search_runs([exp_id]) if "search.stage" in r.data.tags]
    group = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert group.data.tags["mlflow.parentRunId"] == parent and group.info.status == "FINISHED"
    assert child.data.metrics == LOGGED and child.info.status == "FINISHED"
    assert [f.path for f in client.list_artifacts(child.info.run_id, "stage")] == \
        ["stage/model.pt"]
    version = client.get_model_version_by_alias(unique, "candidate")
    assert version.run_id == child.info.run_id
    # int8 static modules neither export nor unpickle: a traced copy is what loads back;
    # the formats tried before left no logged model ("Failed" or unused) behind
    assert version.tags["serialization_format"] == "torchscript"
    assert [(m.name, str(m.status)) for m in client.search_logged_models([exp_id])] == \
        [("quantized", "READY")]
    # the version carries the stage's figures, its source and a description saying so
    assert {k: float(version.tags[k]) for k in LOGGED} == LOGGED
    assert version.tags["source"] == "stage 1-quantize"
    assert version.tags["search.stage"] == "quantize" and version.tags["search.source_trial"] \
        == "3"
    assert version.description.startswith(f"Stage 1-quantize (int8_static) of the search "
                                          f"{unique} run-1, from trial 3. Alias `candidate`")
    assert "4.7 KiB of weights (4800 bytes)" in version.description
    assert "trial run" not in version.description
    import mlflow.pytorch
    import torch

    from search.stages import registry_model
    from search.tracking.registry import _use_tracking_uri

    with _use_tracking_uri(sqlite_uri):
        loaded = mlflow.pytorch.load_model(f"models:/{unique}@candidate")
    local, example, _ = registry_model(str(model))
    with torch.no_grad():
        assert torch.allclose(loaded(example), local(example))


@pytest.mark.parametrize("kind", ["float16", "int8_dynamic", "int8_static"])
def test_registry_loader_rebuilds_every_kind(tmp_path, kind):
    """What the registry logs: the stage's model, float inputs, its test images as example."""
    import torch

    from search.stages import registry_model

    path = stage_model_file(tmp_path, kind)
    model, example, meta = registry_model(str(path))
    assert meta["stage_kind"] == kind and example.dtype == torch.float32
    with torch.no_grad():
        assert model(example).shape == (2, 10)
