"""StageModel: read from a training checkpoint (and the clear errors when it cannot be), written
to a stage file and read back to the same outputs for every kind, and run_stage's dispatch."""
from __future__ import annotations

import pytest
import torch

import tiny_stages as ts
from tiny_stages import data_fixture  # noqa: F401 (fixtures)
from trainers.checkpoints import load_checkpoint, save_checkpoint
from trainers.errors import TrainerError
from trainers.models import build_model
from trainers.stages.quantization import quiet
from trainers.stages import (STAGES, StageModel, from_checkpoint, load_stage_model, run_stage,
                             save_stage_model)


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    return ts.train(tmp_path_factory.mktemp("fit"))


def test_from_checkpoint_gives_the_best_weights_and_config(best, data):
    sm = from_checkpoint(best, data=data)
    state = load_checkpoint(best)
    assert sm.kind == "float32" and not sm.model.training
    assert sm.config == state["config"] and sm.config["model"]["width"] == 8
    assert sm.dims == {"in_channels": 1, "num_classes": 3, "image_size": (8, 8)}
    assert sm.meta["epoch"] == state["best"]["epoch"]
    ref = build_model(sm.config["model"], in_channels=1, num_classes=3, image_size=(8, 8))
    ref.load_state_dict(state["best"]["model"])
    assert torch.equal(ts.outputs(sm.model, data.test), ts.outputs(ref.eval(), data.test))
    assert next(sm.model.parameters()).device.type == "cpu"


def test_missing_and_damaged_checkpoints(tmp_path, best):
    with pytest.raises(TrainerError, match=f"checkpoint {tmp_path / 'nope.pt'}: no such file"):
        from_checkpoint(tmp_path / "nope.pt")
    damaged = tmp_path / "best.pt"
    damaged.write_bytes(open(best, "rb").read()[:300])
    with pytest.raises(TrainerError, match=f"checkpoint {damaged}: cannot be read"):
        from_checkpoint(damaged)


def test_weights_that_do_not_fit_the_config(tmp_path, best, data):
    state = load_checkpoint(best)
    state["config"]["model"]["width"] = 4  # the weights are those of width 8
    path = save_checkpoint(tmp_path / "best.pt", {k: v for k, v in state.items()
                                                  if k != "format"})
    with pytest.raises(TrainerError) as err:
        from_checkpoint(path, data=data)
    msg = str(err.value)
    assert msg.startswith(f"checkpoint {path}: incompatible with its config's model 'cnn': "
                          "layer blocks.0.body.0.weight has shape (8, 1, 3, 3) in the file but "
                          "(4, 1, 3, 3) in the model") and "\n" not in msg
    state["config"]["model"] = {"name": "mlp"}
    path = save_checkpoint(tmp_path / "mlp.pt", {k: v for k, v in state.items()
                                                 if k != "format"})
    with pytest.raises(TrainerError, match="incompatible with its config's model 'mlp': it has "
                                           "a layer 'blocks.0.body.0.weight'"):
        from_checkpoint(path, data=data)
    state["config"]["model"] = {"name": "cnn", "widht": 8}
    path = save_checkpoint(tmp_path / "typo.pt", {k: v for k, v in state.items()
                                                  if k != "format"})
    with pytest.raises(TrainerError, match="its config is not valid: model.widht: unknown"):
        from_checkpoint(path, data=data)


def test_dims_come_from_the_configs_dataset_without_data(tmp_path, best):
    state = load_checkpoint(best)
    state["config"]["data"]["dataset"] = "digits"  # 8x8 images, but 10 classes: a new head
    path = save_checkpoint(tmp_path / "best.pt", {k: v for k, v in state.items()
                                                  if k != "format"})
    with pytest.raises(TrainerError, match="layer classifier.weight has shape \\(3, 16\\) in "
                                           "the file but \\(10, 16\\)"):
        from_checkpoint(path)


NAMED = {"float16": ts.stage("quantize", mode="float16"),
         "int8_dynamic": ts.stage("quantize", mode="int8_dynamic"),
         "int8_static": ts.stage("quantize", mode="int8_static", calibration_batches=2),
         "knn": ts.stage("finetune", mode="transfer", knn=3)}


@pytest.mark.parametrize("pipeline", ["float32", "float16", "int8_dynamic", "int8_static",
                                      "knn", "knn+float16", "knn+int8_dynamic",
                                      "knn+int8_static"])
def test_save_and_load_give_the_same_outputs(tmp_path, best, data, pipeline):
    sm = from_checkpoint(best, data=data)
    for name in pipeline.split("+"):
        if name != "float32":
            sm = run_stage(NAMED[name], sm, data=data)
    path = save_stage_model(sm, tmp_path / "stage.pt")
    with quiet():
        raw = torch.load(path, weights_only=True)  # no pickled module, no code run
    assert set(raw) == {"format", "config", "kind", "meta", "state_dict"}
    back = load_stage_model(path)
    assert (back.kind, back.config, back.meta) == (sm.kind, sm.config, sm.meta)
    assert type(back.model) is type(sm.model) or sm.kind == "int8_static"
    assert torch.equal(ts.outputs(back.model, data.test), ts.outputs(sm.model, data.test))
    assert not list(tmp_path.glob("*.tmp"))


def test_stage_files_that_cannot_be_loaded(tmp_path, best, data):
    with pytest.raises(TrainerError, match="stage model .*nope.pt: no such file"):
        load_stage_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(TrainerError, match="bad.pt: cannot be read"):
        load_stage_model(bad)
    with pytest.raises(TrainerError, match="best.pt: not a stage model file"):
        load_stage_model(best)  # a training checkpoint is not a stage file
    sm = from_checkpoint(best, data=data)
    path = save_stage_model(sm, tmp_path / "s.pt")
    with quiet():
        raw = torch.load(path, weights_only=True)
    raw["config"]["model"]["hidden"] = 32
    torch.save(raw, path)
    with pytest.raises(TrainerError, match="incompatible with its float32 model: layer "
                                           "hidden.0.weight has shape"):
        load_stage_model(path)


def test_run_stage_dispatches_on_the_registry(best, data):
    sm = from_checkpoint(best, data=data)
    assert set(STAGES) == {"finetune", "distill", "quantize"}
    with pytest.raises(TrainerError, match="unknown stage 'prune'; expected one of finetune, "
                                           "distill, quantize"):
        run_stage({"stage": "prune"}, sm)
    off = ts.stage("quantize", enabled=False)
    assert run_stage(off, sm) is sm
    assert isinstance(run_stage(ts.stage("quantize", mode="float16"), sm), StageModel)
