"""The training loop on tiny real data: real torch, real files, one thread."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tiny_training import TinyNet, curves, fresh, tiny_config, tiny_data
from trainers.errors import DivergedError, TrainerError
from trainers.loop import (batch_size_at, derive_seeds, fit, precision_plan, resolve_config,
                           select_device)

DATA = tiny_data()
PLAIN = {"augment": {"shift": 0}, "regularization": {"label_smoothing": 0.0},
         "scheduler": {"name": "none"}}


def test_select_device():
    assert select_device("cpu", cuda_available=True) == torch.device("cpu")
    assert select_device("auto", cuda_available=False) == torch.device("cpu")
    assert select_device("auto", cuda_available=True) == torch.device("cuda")
    assert select_device("cuda", cuda_available=True) == torch.device("cuda")
    with pytest.raises(TrainerError, match="train.device: cuda was requested"):
        select_device("cuda", cuda_available=False)


def test_precision_plan():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert precision_plan("fp16", cuda).autocast is torch.float16
    assert precision_plan("fp16", cuda).scaler
    with pytest.raises(TrainerError, match="fp16 needs a CUDA device"):
        precision_plan("fp16", cpu)
    assert precision_plan("bf16", cpu).autocast is torch.bfloat16
    assert not precision_plan("bf16", cuda).scaler
    assert precision_plan("fp32", cuda).autocast is None


def test_batch_size_schedule():
    data = {"batch_size": 16, "batch_size_double_every": 2, "batch_size_max": 64}
    assert [batch_size_at(data, e) for e in range(7)] == [16, 16, 32, 32, 64, 64, 64]
    off = {"batch_size": 16, "batch_size_double_every": None, "batch_size_max": None}
    assert batch_size_at(off, 5) == 16
    with pytest.raises(TrainerError, match="both or neither"):
        batch_size_at({**off, "batch_size_max": 64}, 0)


def test_seeds_are_derived_and_distinct():
    seeds = derive_seeds(0)
    assert seeds == derive_seeds(0) and len(set(seeds.values())) == len(seeds)
    assert seeds != derive_seeds(1)


def test_config_mistakes_are_trainer_errors():
    with pytest.raises(TrainerError, match="unknown group 'trian'"):
        resolve_config({"trian": {}})
    with pytest.raises(TrainerError, match="train.epoch"):
        fit(tiny_config(train={"epoch": 2}), data=DATA, model=TinyNet())


def test_same_seed_same_metrics_other_seed_others():
    cfg = tiny_config(augment={"shift": 1, "mixup": 0.2}, model={"dropout": 0.2})
    a = fit(cfg, data=DATA, model=TinyNet(dropout=0.3))
    b = fit(cfg, data=DATA, model=TinyNet(dropout=0.3))
    assert curves(a.history) == curves(b.history) and a.test_accuracy == b.test_accuracy
    c = fit({**cfg, "train": {**cfg["train"], "seed": 1}}, data=DATA, model=TinyNet(dropout=0.3))
    assert curves(c.history) != curves(a.history)


def test_it_learns_and_reports_every_metric():
    reports = []
    result = fit(tiny_config(train={"temperature": 2.0, "temperature_schedule": "lr"}),
                 data=DATA, model=TinyNet(), report=reports.append)
    assert [m["epoch"] for m in reports] == [1, 2, 3]
    assert set(reports[0]) >= {"epoch", "train_loss", "train_accuracy", "val_loss",
                               "val_accuracy", "lr", "grad_norm", "epoch_time",
                               "samples_per_sec", "temperature", "num_params"}
    assert all(math.isfinite(v) for m in reports for v in m.values())
    assert 1.0 < reports[0]["temperature"] < 2.0  # onecycle's lr is below its peak here
    assert result.best_val_accuracy == max(m["val_accuracy"] for m in reports)
    assert result.best_val_accuracy > 0.8 and result.test_accuracy > 0.8
    assert result.history == reports and not result.stopped_early
    assert result.num_params == sum(p.numel() for p in TinyNet().parameters())
    assert {m["num_params"] for m in reports} == {result.num_params}  # known before training


class _ModeSpy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = TinyNet(batch_norm=False)
        self.modes: list[tuple[bool, int]] = []

    def forward(self, x):
        self.modes.append((self.training, len(x)))
        return self.net(x)


def test_training_batches_run_in_train_mode_evaluation_in_eval_mode():
    spy = _ModeSpy()
    fit(tiny_config(train={"epochs": 1}), data=DATA, model=spy)
    train = [n for mode, n in spy.modes if mode]
    evals = [n for mode, n in spy.modes if not mode]
    assert sum(train) == len(DATA.train)  # one pass, all training batches in train mode
    assert sum(evals) == len(DATA.val) + len(DATA.test)  # val each epoch, test once, eval mode


def test_report_returning_true_stops():
    seen = []
    result = fit(tiny_config(train={"epochs": 5}), data=DATA, model=TinyNet(),
                 report=lambda m: seen.append(m["epoch"]) or True)
    assert seen == [1] and len(result.history) == 1 and result.stopped_early


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    # A vanishing lr keeps the validation accuracy where epoch 1 left it.
    cfg = tiny_config(train={"epochs": 10, "early_stopping": 2},
                      optimizer={"lr": 1e-9, "weight_decay": 0.0}, **PLAIN)
    result = fit(cfg, data=DATA, model=TinyNet(batch_norm=False))
    assert len(result.history) == 3 and result.stopped_early and result.best_epoch == 1
    # min_delta: gains of at most min_delta do not count, though the best model is still kept
    result = fit(tiny_config(train={"epochs": 10, "early_stopping": 2, "min_delta": 1.0}),
                 data=DATA, model=TinyNet())
    accuracies = [m["val_accuracy"] for m in result.history]
    assert len(accuracies) == 3 and accuracies[2] > accuracies[0]
    assert result.best_epoch == 1 + accuracies.index(max(accuracies))


def test_non_finite_loss_raises_diverged_error():
    class Exploding(TinyNet):
        def forward(self, x):
            return super().forward(x) * float("nan")

    with pytest.raises(DivergedError, match="epoch 1") as info:
        fit(tiny_config(), data=DATA, model=Exploding())
    assert isinstance(info.value, RuntimeError) and info.value.epoch == 1


def test_grad_accumulation_equals_one_big_batch():
    cfg = tiny_config(optimizer={"name": "sgd", "lr": 0.5, "weight_decay": 0.0},
                      train={"epochs": 2}, **PLAIN)
    big = {**cfg, "data": {"batch_size": 32}}
    accum = {**cfg, "data": {"batch_size": 8}, "train": {**cfg["train"], "grad_accum": 4}}
    model_a, model_b = TinyNet(batch_norm=False), TinyNet(batch_norm=False)
    a, b = fit(big, data=DATA, model=model_a), fit(accum, data=DATA, model=model_b)
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert [m["val_loss"] for m in a.history] == pytest.approx([m["val_loss"] for m in b.history])
    assert [m["grad_norm"] for m in a.history] == pytest.approx(
        [m["grad_norm"] for m in b.history], rel=1e-5)


def test_clipping_bounds_the_update_and_the_reported_norm_is_before_clipping():
    cfg = tiny_config(optimizer={"name": "sgd", "lr": 1.0, "weight_decay": 0.0},
                      regularization={"grad_clip": 1e-3, "label_smoothing": 0.0},
                      train={"epochs": 1}, data={"batch_size": len(DATA.train)},
                      augment={"shift": 0}, scheduler={"name": "none"})
    model = TinyNet(batch_norm=False)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    result = fit(cfg, data=DATA, model=model)  # one optimiser step
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(1e-3, rel=1e-4)
    assert result.history[0]["grad_norm"] > 1e-2


def test_batch_size_schedule_in_the_loop():
    result = fit(tiny_config(train={"epochs": 4},
                             data={"batch_size": 8, "batch_size_double_every": 1,
                                   "batch_size_max": 32}), data=DATA, model=TinyNet())
    assert [m["batch_size"] for m in result.history] == [8, 16, 32, 32]


def test_fp16_on_cpu_is_an_error_and_bf16_runs():
    with pytest.raises(TrainerError, match=r"^train\.precision: fp16 needs a CUDA device"):
        fit(tiny_config(train={"epochs": 1, "precision": "fp16"}), data=DATA, model=TinyNet())
    rb = fit(tiny_config(train={"epochs": 2, "precision": "bf16"}), data=DATA, model=TinyNet())
    assert all(math.isfinite(m["train_loss"]) for m in rb.history) and rb.test_accuracy > 0.5


@pytest.mark.parametrize("mode", ["swa", "ema"])
def test_weight_averaging_is_the_evaluated_model(mode, tmp_path):
    cfg = tiny_config(train={"epochs": 3, "averaging": mode, "swa_start": 2, "ema_decay": 0.5})
    result = fit(cfg, data=DATA, model=TinyNet(), checkpoint_dir=str(tmp_path))
    assert result.test_accuracy > 0.6
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    selected, averaged = best["best"]["model"], best["averaged"]
    assert int(averaged["n_averaged"]) > 0
    for key, value in selected.items():  # the selected weights are the average's
        torch.testing.assert_close(value, averaged[f"module.{key}"])
    assert any(not torch.equal(v, best["model"][k]) for k, v in selected.items())


def test_grad_checkpointing_recomputes_to_the_same_result():
    from trainers.models import build_model

    def cnn():
        torch.manual_seed(0)
        return build_model({"name": "cnn", "width": 4, "hidden": 8}, in_channels=1,
                           num_classes=3, image_size=(8, 8))

    plain = fit(tiny_config(train={"epochs": 2}), data=DATA, model=cnn())
    model = cnn()
    again = fit(tiny_config(train={"epochs": 2, "grad_checkpointing": True}), data=DATA,
                model=model)
    assert model.grad_checkpointing
    for a, b in zip(curves(again.history), curves(plain.history)):
        assert a == pytest.approx(b, rel=1e-5)
    with pytest.raises(TrainerError, match="grad_checkpointing"):
        fit(tiny_config(train={"grad_checkpointing": True}), data=DATA, model=TinyNet())


def test_penalties_reach_the_loop():
    base = fit(tiny_config(train={"epochs": 1}), data=DATA, model=TinyNet())
    pen = fit(tiny_config(train={"epochs": 1}, regularization={"l1": 1e-2, "l2": 1e-2}),
              data=DATA, model=TinyNet())
    assert pen.history[0]["grad_norm"] != base.history[0]["grad_norm"]


def test_kfold_averages_the_folds():
    folds = [tiny_data(seed=1), tiny_data(seed=2)]
    reports = []
    cfg = tiny_config(data={"kfold": 2}, train={"epochs": 2})
    result = fit(cfg, data=folds, model=TinyNet(), report=reports.append)
    assert len(result.folds) == 2 and [m["epoch"] for m in reports] == [1, 2]
    assert result.best_val_accuracy == pytest.approx(
        sum(f.best_val_accuracy for f in result.folds) / 2)
    assert result.test_accuracy == pytest.approx(sum(f.test_accuracy for f in result.folds) / 2)
    assert reports[1]["val_accuracy"] == pytest.approx(
        sum(f.history[1]["val_accuracy"] for f in result.folds) / 2)
    with pytest.raises(TrainerError, match="resuming a k-fold run"):
        fit(cfg, data=folds, model=TinyNet(), resume_from="last.pt")


def test_kfold_on_real_data():
    cfg = {"data": {"dataset": "digits", "kfold": 3}, "augment": {"shift": 0},
           "model": {"name": "mlp", "width": 16, "depth": 1}, "optimizer": {"lr": 0.02},
           "scheduler": {"name": "none"}, "train": {"epochs": 2, "threads": 1, "device": "cpu"}}
    result = fit(cfg)
    assert len(result.folds) == 3 and result.best_val_accuracy > 0.5
    assert len({f.history[0]["val_loss"] for f in result.folds}) == 3  # three different folds
    assert result.test_accuracy == pytest.approx(sum(f.test_accuracy for f in result.folds) / 3)
