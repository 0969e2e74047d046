"""The device layer of the trainer on a CPU machine: a GPU named but unusable is said, never a
silent CPU run; the GPU speed options (channels_last, compile) go through fit's code path."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers import fit
from trainers.batches import TensorSplit
from trainers.datasets import Data
from trainers.devices import gpu_problem, prepare, release_memory
from trainers.errors import TrainerError


def test_a_named_gpu_torch_cannot_use_is_a_problem_an_empty_list_is_not():
    assert gpu_problem({}) is None and gpu_problem({"CUDA_VISIBLE_DEVICES": ""}) is None
    assert gpu_problem({"CUDA_VISIBLE_DEVICES": "-1"}) is None
    problem = gpu_problem({"CUDA_VISIBLE_DEVICES": "0,1"})
    assert problem.startswith("this process was given GPU 0,1 (CUDA_VISIBLE_DEVICES) but torch "
                              "cannot use it: ")
    assert problem.endswith("or set train.device: cpu to train on the CPU")
    prepare(torch.device("cpu"))  # nothing to set up on the CPU
    release_memory()  # CUDA never initialised here: nothing to give back


def test_channels_last_and_compile_go_through_fit(monkeypatch):
    compiled = []

    def compile_spy(module, **kw):  # the real one takes minutes on this CPU machine
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", compile_spy)
    torch.manual_seed(0)
    from trainers.models import build_model

    model = build_model({"name": "cnn", "width": 8}, in_channels=1, num_classes=10,
                        image_size=(8, 8))
    x, y = torch.randn(48, 1, 8, 8), torch.arange(48) % 10
    split = TensorSplit(x, y)
    images = Data(split, split, split, num_classes=10, in_channels=1, image_size=(8, 8),
                  mean=(0.0,), std=(1.0,), in_memory=True, name="tiny")
    got = fit({"model": {"name": "cnn", "width": 8}, "data": {"batch_size": 16},
               "train": {"epochs": 1, "channels_last": True, "compile": True,
                         "device": "cpu"}}, data=images, model=model, cpus=1)
    assert compiled == [model]  # the training forward; checkpoints keep the module's keys
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert got.device == {"device": "cpu"} and len(got.history) == 1


def test_channels_last_on_data_that_is_not_images_is_refused():
    x, y = torch.randn(12, 4), torch.arange(12) % 3
    split = TensorSplit(x, y)
    data = Data(split, split, split, num_classes=3, in_channels=4, image_size=(1, 1),
                mean=(0.0,), std=(1.0,), in_memory=True, name="table")
    with pytest.raises(TrainerError, match=r"^train.channels_last: needs images \(N×C×H×W "
                                           r"data\), got 2-D inputs; set it to false$"):
        fit({"train": {"epochs": 1, "channels_last": True, "device": "cpu"}}, data=data,
            model=nn.Linear(4, 3), cpus=1)
