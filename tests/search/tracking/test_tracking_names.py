"""The metric names of names.py on reports shaped as the real trainer's (trainers/loop.py's
epoch report, search/tune/trainable.py's final fields): per-epoch quantities are curves,
constants and single points are one value each."""
from __future__ import annotations

from search.tracking.names import split_result

# trainers/loop.py reports these every epoch (num_params too: a pruner reads it there), and
# the validation pass adds val_*
EPOCH = {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.8, "lr": 0.01, "grad_norm": 1.5,
         "samples_per_sec": 1e4, "batch_size": 64, "num_params": 2410.0, "val_accuracy": 0.7,
         "val_loss": 0.6, "epoch_time": 0.1}
CURVES = {"epoch/train_loss", "epoch/train_accuracy", "epoch/val_accuracy", "epoch/val_loss",
          "training/lr", "training/grad_norm", "training/samples_per_sec",
          "training/epoch_time"}


def test_a_constant_of_every_epoch_is_one_value_not_a_flat_curve():
    curves, whole = split_result(EPOCH, last=False)
    assert set(curves) == CURVES  # no epoch/num_params, epoch/batch_size, epoch/epoch
    assert whole == {"num_params": 2410.0}  # a pruned trial (no last report) has it too


def test_the_last_reports_single_points_are_one_value_each():
    final = {**EPOCH, "selected_epoch": 2, "epochs_run": 3, "test_accuracy": 0.69,
             "final_val_accuracy": 0.72, "horizon": 3}
    curves, whole = split_result(final, last=True)
    assert set(curves) == CURVES  # the epoch's own values stay curves (no epoch/horizon)
    assert whole == {"num_params": 2410.0, "selected_epoch": 2, "epochs_run": 3,
                     "test_accuracy": 0.69, "val_accuracy": 0.72, "horizon": 3}
