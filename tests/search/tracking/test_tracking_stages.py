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
    parent = tracked_search(tmp_path, sqlite_uri, unique)
    log = StageLog.open(tmp_path, "run-1")  # a later process: reattached by the saved settings
    assert log is not None and not log.writer.down
    run_id = log.start("1-finetune", {"stage": "finetune", "epochs": 2}, 1, {"epochs": 2})
    for epoch in (1, 2):
        log.curve("1-finetune", epoch, {"val_accuracy": 0.5 + epoch / 10})
    log.finish("1-finetune", FIGURES, [])
    failed = log.start("2-distill", {"stage": "distill"}, 2, {"epochs": 1})
    log.fail("2-distill", "RuntimeError: out of luck")
    client = MlflowClient(sqlite_uri)
    run = client.get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["search.stage"] == "finetune"
    assert run.data.tags["search.stage_index"] == "1"
    assert run.info.run_name == "1-finetune" and run.info.status == "FINISHED"
    assert run.data.params == {"epochs": "2"} and run.data.metrics == {
        **FIGURES, "epoch/val_accuracy": 0.7}
    assert [m.step for m in client.get_metric_history(run_id, "epoch/val_accuracy")] == [1, 2]
    bad = client.get_run(failed)
    assert bad.info.status == "FAILED" and bad.data.tags["search.reason"] == \
        "RuntimeError: out of luck"


def test_backend_down_spools_stages_and_sync_replays_them(tmp_path, sqlite_uri, unique, capfd):
    from tracking_helpers import free_port

    parent = tracked_search(tmp_path, sqlite_uri, unique)
    model = stage_model_file(tmp_path / "stages" / "1-quantize")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    log = StageLog.open(tmp_path, "run-1", tracking_uri=dead)
    assert log.writer.down
    assert log.start("1-quantize", {"stage": "quantize"}, 1, {"mode": "int8_dynamic"}) is None
    log.finish("1-quantize", FIGURES, [model])
    assert log.register("1-quantize", model) is None
    assert log.spooled == 7  # run, params, metrics, artifact, state tag, end, the model
    client = MlflowClient(sqlite_uri, registry_uri=sqlite_uri)
    assert not [r for r in client.search_runs([client.get_experiment_by_name(unique)
                                               .experiment_id])
                if "search.stage" in r.data.tags]

    capfd.readouterr()
    [(_, applied, left)] = sync(tmp_path, tracking_uri=sqlite_uri)  # `search sync`
    assert left == 0 and applied == 7
    # the formats tried before torchscript fail quietly (MLflow warned of each, with a
    # traceback-like message, in earlier versions of this code)
    assert "Failed to validate" not in "".join(capfd.readouterr())
    [child] = [r for r in client.search_runs([client.get_experiment_by_name(unique)
                                              .experiment_id]) if "search.stage" in r.data.tags]
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert child.data.metrics == FIGURES and child.info.status == "FINISHED"
    assert [f.path for f in client.list_artifacts(child.info.run_id, "stage")] == \
        ["stage/model.pt"]
    version = client.get_model_version_by_alias(unique, "candidate")
    assert version.run_id == child.info.run_id
    # int8 static modules neither export nor unpickle: a traced copy is what loads back
    assert version.tags["serialization_format"] == "torchscript"
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
