"""The trainable's reports, for a trial that resumes after its last epoch (PBT restarts one from
its final checkpoint): no epoch runs, yet its final report must carry the epoch metrics."""
from __future__ import annotations

import torch

from search.trainable import last_epoch_report
from trainers import fit
from trainers.catalog import defaults


def test_a_trial_resumed_after_its_last_epoch_reports_the_last_epochs_metrics(tmp_path):
    torch.set_num_threads(1)
    config = defaults()
    config["data"]["dataset"] = "digits"
    config["train"]["epochs"] = 2
    config["model"].update(width=8, hidden=16)
    folder = str(tmp_path)
    first = fit(config, checkpoint_dir=folder, cpus=1)
    reports: list[dict] = []
    resumed = fit(config, checkpoint_dir=folder, resume_from=f"{folder}/last.pt", cpus=1,
                  report=reports.append)
    assert reports == []  # nothing left to train: this is why the trainable needs the fallback
    report = last_epoch_report(resumed.history)
    assert report["training_iteration"] == 2
    assert report["val_accuracy"] == first.history[-1]["val_accuracy"]
    assert last_epoch_report([]) is None


def test_a_diverged_toy_trial_raises_the_trainers_error_which_is_not_retried():
    import pytest

    from search.testing import known_work_fit
    from search.trainable import known_failure, one_line
    from trainers.errors import DivergedError

    config = {"optimizer": {"lr": 0.5}, "train": {"epochs": 2},
              "toy": {"diverge_if_lr_above": 0.3, "epoch_seconds": 0}}
    with pytest.raises(DivergedError) as info:  # was a TypeError made while raising it
        known_work_fit(config)
    assert known_failure(info.value)  # failed at once, not retried
    assert one_line(info.value) == \
        "DivergedError: training diverged in epoch 1: the training loss is nan"
