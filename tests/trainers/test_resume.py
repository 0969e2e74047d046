"""Checkpoints written by the loop, and resuming from them."""
from __future__ import annotations

import pytest
import torch

from tiny_training import TinyNet, curves, plain_values_only, tiny_config, tiny_data
from trainers.errors import TrainerError
from trainers.loop import fit

DATA = tiny_data()
# Every random stream in use: shuffling, shift, mixup, dropout; a per-step schedule after a
# warmup, and EMA weights, all of which a resumed run must pick up exactly where they were.
RICH = tiny_config(train={"epochs": 4, "averaging": "ema", "ema_decay": 0.9},
                   augment={"shift": 1, "mixup": 0.3, "mix_prob": 0.5},
                   scheduler={"name": "onecycle", "warmup_epochs": 1})


def test_checkpoints_exist_when_report_is_called_and_hold_plain_values(tmp_path):
    seen = []

    def report(metrics):
        last = torch.load(tmp_path / "last.pt", weights_only=True)
        seen.append((metrics["epoch"], last["epoch"], (tmp_path / "best.pt").exists()))
        assert plain_values_only(last)

    result = fit(tiny_config(), data=DATA, model=TinyNet(), checkpoint_dir=str(tmp_path),
                 report=report)
    assert seen == [(1, 1, True), (2, 2, True), (3, 3, True)]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == result.best_epoch and result.checkpoint == str(tmp_path / "best.pt")
    assert best["config"]["train"]["epochs"] == 3  # the resolved config travels along


def test_resumed_run_equals_the_uninterrupted_run(tmp_path):
    full = fit(RICH, data=DATA, model=TinyNet(dropout=0.3), checkpoint_dir=str(tmp_path / "a"))
    first = fit(RICH, data=DATA, model=TinyNet(dropout=0.3), checkpoint_dir=str(tmp_path / "b"),
                report=lambda m: m["epoch"] == 2)
    assert len(first.history) == 2 and first.stopped_early
    rest = fit(RICH, data=DATA, model=TinyNet(dropout=0.3, seed=7),
               checkpoint_dir=str(tmp_path / "b"), resume_from=str(tmp_path / "b" / "last.pt"))
    assert curves(rest.history) == curves(full.history)
    assert rest.test_accuracy == full.test_accuracy and rest.best_epoch == full.best_epoch
    assert not rest.stopped_early


def test_resuming_into_another_model_is_a_trainer_error(tmp_path):
    fit(tiny_config(train={"epochs": 1}), data=DATA, model=TinyNet(), checkpoint_dir=str(tmp_path))
    with pytest.raises(TrainerError, match="does not fit the model"):
        fit(tiny_config(), data=DATA, model=TinyNet(batch_norm=False),
            resume_from=str(tmp_path / "last.pt"))
    with pytest.raises(TrainerError, match="no such file"):
        fit(tiny_config(), data=DATA, model=TinyNet(), resume_from=str(tmp_path / "x.pt"))
