"""The finetune stage: full fine-tuning at a scaled lr, transfer mode's frozen backbone, the kNN
head, another dataset, and the mistakes it refuses."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tiny_stages as ts
from tiny_stages import data_fixture, trained_fixture  # noqa: F401 (fixtures)
from trainers.errors import TrainerError
from trainers.stages import KNNClassifier, run_stage
from trainers.stages.anatomy import ANATOMY, frozen_groups
from trainers.models import MODELS, build_model


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_full_finetune_trains_every_layer_at_the_scaled_lr(trained, data):
    before = _state(trained.model)
    seen = []
    out = run_stage(ts.stage("finetune", epochs=2, lr_scale=0.1), trained, data=data,
                    report=seen.append)
    assert [m["epoch"] for m in seen] == [1, 2]
    lr = trained.config["optimizer"]["lr"] * 0.1
    assert out.config["optimizer"]["lr"] == pytest.approx(lr)
    assert out.config["train"]["epochs"] == 2
    assert max(m["lr"] for m in seen) <= lr * (1 + 1e-9)  # onecycle peaks at the scaled lr
    assert out.kind == "float32" and not out.model.training
    after = out.model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before
               if k.endswith("weight"))
    assert all(torch.equal(v, trained.model.state_dict()[k]) for k, v in before.items())
    assert out.meta["trainable_params"] == sum(p.numel() for p in out.model.parameters())


@pytest.mark.parametrize("freeze", [None, 1])
def test_transfer_freezes_the_backbone_bit_for_bit(trained, data, freeze):
    before = _state(trained.model)
    out = run_stage(ts.stage("finetune", mode="transfer", epochs=2, lr_scale=1.0,
                             freeze=freeze), trained, data=data)
    after = out.model.state_dict()
    frozen = ("blocks.0.", "blocks.1.") if freeze is None else ("blocks.0.",)
    for key, value in before.items():
        same = torch.equal(value, after[key])
        if key.startswith(frozen):  # weights and BatchNorm statistics
            assert same, key
        elif not key.endswith("num_batches_tracked"):
            assert not same, key
    trainable = sum(p.numel() for k, p in out.model.named_parameters()
                    if not k.startswith(frozen))
    assert out.meta["trainable_params"] == trainable
    assert all(p.requires_grad for p in out.model.parameters())  # unfrozen afterwards


def test_knn_head_predicts_the_label_of_the_nearest_training_feature(trained, data):
    seen = []
    out = run_stage(ts.stage("finetune", mode="transfer", knn=1), trained, data=data,
                    report=seen.append)
    assert seen == []  # a whole frozen backbone: nothing to train
    assert isinstance(out.model, KNNClassifier)
    # the features by hand: everything before the classifier of the trained CNN
    m = trained.model

    def features(x):
        with torch.no_grad():
            return F.normalize(m.hidden(m.head(m.forward_features(x))), dim=1)

    train_f, test_f = features(data.train.x), features(data.test.x)
    nearest = data.train.y[(test_f @ train_f.T).argmax(1)]
    assert torch.equal(out.model(data.test.x).argmax(1), nearest)
    assert out.meta["steps"] == [{"op": "knn", "k": 1, "head": "classifier",
                                  "bank": [len(data.train), 16]}]


def test_knn_votes_of_k_neighbours(trained, data):
    out = run_stage(ts.stage("finetune", mode="transfer", knn=5), trained, data=data)
    scores = out.model(data.test.x)
    assert torch.allclose(scores.sum(1), torch.ones(len(scores)), atol=0.01)
    assert (scores.argmax(1) == data.test.y).float().mean() > 0.95


def test_finetune_on_another_dataset_gets_a_new_head(trained):
    # the tiny data has 3 classes; scikit-learn's digits (8x8, one channel) has 10
    out = run_stage(ts.stage("finetune", epochs=1, data={"dataset": "digits",
                                                         "batch_size": 64}),
                    trained, cpus=1)
    assert out.config["data"]["dataset"] == "digits"
    assert out.dims == {"in_channels": 1, "num_classes": 10, "image_size": (8, 8)}
    assert out.model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert trained.model.classifier.out_features == 3  # the previous model is untouched
    assert any("new head for 10 classes" in n for n in out.meta["notes"])


def test_mistakes(trained, data):
    with pytest.raises(TrainerError, match="finetune transfer: freeze 3 exceeds the 2 backbone "
                                           "groups of model 'cnn'"):
        run_stage(ts.stage("finetune", mode="transfer", freeze=3), trained, data=data)
    int8 = run_stage(ts.stage("quantize", mode="int8_dynamic"), trained, data=data)
    with pytest.raises(TrainerError, match="finetune: the previous stage's model is "
                                           "int8_dynamic, which cannot be trained"):
        run_stage(ts.stage("finetune"), int8, data=data)
    with pytest.raises(TrainerError, match="model 'factory' does not say which layers are its "
                                           "backbone"):
        frozen_groups(trained.model, {"model": {"name": "factory"}}, None, "finetune transfer")


def test_every_registry_model_but_factory_has_an_anatomy():
    assert set(ANATOMY) == set(MODELS) - {"factory"}


@pytest.mark.parametrize("name", sorted(ANATOMY))
def test_anatomy_names_real_layers(name):
    size = (16,) if name == "cnn1d" else (8, 8)  # cnn1d takes sequences
    model = build_model({"name": name}, in_channels=1, num_classes=3, image_size=size)
    groups = ANATOMY[name].groups(model)
    head = model.get_submodule(ANATOMY[name].head)
    assert len(groups) >= 2 and isinstance(head, torch.nn.Linear) and head.out_features == 3
    backbone = {id(p) for g in groups for m in g for p in m.parameters()}
    assert not backbone & {id(p) for p in head.parameters()}
