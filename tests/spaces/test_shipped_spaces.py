"""The spaces shipped in spaces/*.yaml: valid, well-formed examples of the language."""
from __future__ import annotations

from pathlib import Path

import pytest

from search.cli import main
from spaces import load_space, shipped
from spaces.space import SHIPPED_DIR
from spaces.values import passes
from trainers.catalog import GROUPS

SHIPPED = sorted(SHIPPED_DIR.glob("*.yaml"))
REQUIRED = {"quickstart", "fashion_mnist_cnn", "cifar10_resnet", "digits_mlp"}


def test_the_promised_spaces_are_shipped():
    assert REQUIRED <= {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_space_validates_and_samples(path: Path, capsys):
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    space = load_space(path)
    assert out.splitlines()[-1] == (f"{len(space.params)} searched parameters, "
                                    f"{out.splitlines()[-1].split(', ')[1]}")
    assert space.name == path.stem and space.params
    assert load_space(space.to_yaml()) == space
    for params, config in space.sample(3, 0):
        for gname, group in GROUPS.items():
            selected = config[gname].get(group.selector) if group.selector else None
            options = group.options_for(selected)
            assert set(config[gname]) == set(options)
            assert all(passes(options[k], v) for k, v in config[gname].items())
        assert space.config_from_params(params) == config


def test_quickstart_is_what_the_task_describes():
    space = load_space(shipped("quickstart"))
    names = {p.name for p in space.params}
    assert {"optimizer.lr", "optimizer.weight_decay", "model.dropout", "model.width",
            "regularization.label_smoothing", "optimizer.name", "data.batch_size",
            "optimizer.name.sgd.momentum", "optimizer.name.sgd.nesterov"} <= names
    fixed = space.fixed
    assert fixed["data"]["dataset"] == "mnist5k" and fixed["model"]["name"] == "cnn"
    assert fixed["scheduler"]["name"] == "onecycle"
    # sizes (trials, epochs, grace period) are left for tuning; the shape is the promise
    assert space.pruner.name == "asha" and space.sampler.name == "tpe"
    assert space.resources.cpu == 1
    assert [s.name for s in space.stages] == ["finetune", "distill", "quantize"]
    assert space.stages[2].options["mode"] == "int8_static"


def test_other_shipped_spaces_keep_their_promises():
    fashion = load_space(shipped("fashion_mnist_cnn"))
    assert fashion.fixed["data"]["dataset"] == "fashion_mnist"
    assert fashion.resources.gpu == 0.25
    cifar = load_space(shipped("cifar10_resnet"))
    f = cifar.fixed
    assert f["model"]["name"] == "resnet18" and f["optimizer"]["nesterov"] is True
    assert f["scheduler"]["name"] == "cosine" and f["scheduler"]["warmup_epochs"] > 0
    assert f["train"]["precision"] == "fp16" and cifar.resources.gpu == 0.5
    assert {"augment.mixup", "augment.cutmix"} <= {p.name for p in cifar.params}
    digits = load_space(shipped("digits_mlp"))
    assert digits.fixed["data"]["dataset"] == "digits" and digits.fixed["data"]["kfold"] >= 2
    assert digits.fixed["model"]["name"] == "mlp"
