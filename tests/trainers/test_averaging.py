from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers.averaging import WeightAverager, swa_start_epoch
from trainers.errors import TrainerError

torch.set_num_threads(1)


def test_swa_starts_at_the_last_quarter_unless_given():
    assert swa_start_epoch(None, 12) == 10
    assert swa_start_epoch(None, 10) == 8
    assert swa_start_epoch(None, 1) == 1
    assert swa_start_epoch(4, 12) == 4


def _set(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_ema_follows_the_decay_formula():
    model = nn.Linear(2, 1)
    avg = WeightAverager(model, "ema", epochs=3, ema_decay=0.9)
    assert avg.eval_model(model) is model  # nothing averaged yet
    _set(model, 1.0)
    avg.after_step(model)  # the first update copies
    _set(model, 3.0)
    avg.after_step(model)
    evaluated = avg.eval_model(model)
    assert evaluated is not model
    assert evaluated.weight.flatten().tolist() == pytest.approx([0.9 * 1 + 0.1 * 3] * 2)


def test_swa_is_the_mean_of_epoch_end_weights_from_its_start():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    avg = WeightAverager(model, "swa", epochs=4, swa_start=2)
    data = [(torch.randn(16, 2) * 3 + 5, torch.zeros(16))]
    for epoch, value in zip(range(1, 5), (10.0, 1.0, 2.0, 6.0)):
        _set(model[0], value)
        avg.after_step(model)  # SWA ignores steps
        avg.after_epoch(model, epoch, lambda: iter(data))
    evaluated = avg.eval_model(model)
    assert evaluated[0].weight.flatten().tolist() == pytest.approx([3.0] * 4)  # mean(1, 2, 6)
    # BatchNorm statistics were recomputed for the averaged weights
    with torch.no_grad():
        expected = evaluated[0](data[0][0]).mean(0)
    torch.testing.assert_close(evaluated[1].running_mean, expected)


def test_state_round_trip_and_unknown_mode():
    model = nn.Linear(2, 1)
    avg = WeightAverager(model, "ema", epochs=2)
    avg.after_step(model)
    other = WeightAverager(nn.Linear(2, 1), "ema", epochs=2)
    other.load_state_dict(avg.state_dict())
    assert other.active and torch.equal(other.eval_model(model).weight, model.weight)
    assert WeightAverager(model, "none", epochs=2).state_dict() is None
    with pytest.raises(TrainerError, match="train.averaging"):
        WeightAverager(model, "mean", epochs=2)
