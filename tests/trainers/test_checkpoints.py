from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from tiny_training import plain_values_only
from trainers.checkpoints import (KEYS, load_checkpoint, load_weights, rng_state,
                                  save_checkpoint, set_rng_state)
from trainers.errors import TrainerError

torch.set_num_threads(1)


def _state() -> dict:
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {"config": {"train": {"epochs": 2}}, "epoch": 1, "model": model.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": {"steps": 1}, "scaler": None,
            "averaged": None, "rng": rng_state({"g": torch.Generator().manual_seed(1)}),
            "best": {"epoch": 1, "val_accuracy": 0.5, "model": model.state_dict()},
            "early_stopping": {"best": 0.5, "bad_epochs": 0}, "history": [{"epoch": 1}]}


def test_round_trip_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "sub" / "last.pt", _state())
    raw = torch.load(path, weights_only=True)
    assert plain_values_only(raw) and raw["format"] == 1 and set(KEYS) <= set(raw)
    state = load_checkpoint(path)
    assert state["history"] == [{"epoch": 1}]
    assert set(load_weights(path)) == {"weight", "bias"}
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(TrainerError, match=f"{tmp_path / 'nope.pt'}: no such file"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(TrainerError, match="a folder"):
        load_checkpoint(tmp_path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(TrainerError, match="cannot be read"):
        load_checkpoint(path)
    good = save_checkpoint(tmp_path / "good.pt", _state())
    path.write_bytes(good.read_bytes()[:200])  # truncated
    with pytest.raises(TrainerError, match="cannot be read"):
        load_checkpoint(path)


def test_a_pickled_module_is_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save({"format": 1, "model": nn.Linear(2, 2)}, path)
    with pytest.raises(TrainerError, match=f"{path}: cannot be read"):
        load_checkpoint(path)


def test_foreign_or_incomplete_checkpoints(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(TrainerError, match="format None is not supported"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": 1, "model": {}}, tmp_path / "part.pt")
    with pytest.raises(TrainerError, match="incomplete, it lacks config"):
        load_checkpoint(tmp_path / "part.pt")


def test_rng_states_restore_every_stream():
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    saved = rng_state({"batches": g})
    assert plain_values_only(saved)
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=g))
    set_rng_state(saved, {"batches": g})
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=g))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and torch.equal(first[3], again[3])
