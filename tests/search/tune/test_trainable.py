"""The trainable's reports, for a trial that resumes after its last epoch (PBT restarts one from
its final checkpoint): no epoch runs, yet its final report must carry the epoch metrics."""
from __future__ import annotations

import torch

from search.tune.trainable import last_epoch_report
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


def test_a_fit_function_says_whether_it_trains_a_model():
    from search.commands.run import trains_model

    assert trains_model("search.testing:known_work_fit") is False  # the stages are skipped
    assert trains_model("trainers:fit") is True  # any other function: it does


def test_a_kfold_trial_says_how_many_folds_ran_and_each_folds_score():
    """From a real 2-fold fit to the study's trial (as the searcher tells it), the run summary,
    `search status` and the MLflow metrics of the trial."""
    import optuna

    from search.lifecycle.plan import Objective
    from search.tune.searcher import conclude
    from search.lifecycle.summary import run_summary, status_text
    from search.tracking.runs import metrics_of
    from search.tune.trainable import final_fields

    torch.set_num_threads(1)
    cfg = {"data": {"dataset": "digits", "kfold": 2}, "augment": {"shift": 0},
           "model": {"name": "mlp", "width": 8, "depth": 1}, "scheduler": {"name": "none"},
           "train": {"epochs": 1, "threads": 1, "device": "cpu"}}
    result = fit(cfg)
    objectives = (Objective("val_accuracy", "maximize"),)
    final = final_fields(result, objectives, "")
    scores = [f.best_val_accuracy for f in result.folds]
    assert final["folds"] == 2 and final["fold_val_accuracy"] == scores
    assert metrics_of(final)["fold2_val_accuracy"] == scores[1]  # an MLflow metric
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.set_user_attr("run_id", "r")
    conclude(study, trial.number, objectives, {**final, "trial_finished": True})
    line = (f"trial #0: 2 folds ran; val_accuracy per fold {scores[0]:.4g}, {scores[1]:.4g} "
            f"(mean {sum(scores) / 2:.4g})")
    assert line in run_summary(study, "r", objectives).splitlines()
    assert line in status_text(study, objectives, []).splitlines()


def test_a_diverged_toy_trial_raises_the_trainers_error_which_is_not_retried():
    import pytest

    from search.testing import known_work_fit
    from search.tune.trainable import known_failure, one_line
    from trainers.errors import DivergedError

    config = {"optimizer": {"lr": 0.5}, "train": {"epochs": 2},
              "params": {"diverge_if_lr_above": 0.3, "epoch_seconds": 0}}
    with pytest.raises(DivergedError) as info:  # was a TypeError made while raising it
        known_work_fit(config)
    assert known_failure(info.value)  # failed at once, not retried
    assert one_line(info.value) == \
        "DivergedError: training diverged in epoch 1: the training loss is nan"


def test_epochs_between_decisions_are_held_and_sent_with_the_next_report(tmp_path, monkeypatch):
    """With ASHA's rungs at 2 and 4 of 6 epochs, Tune hears of epochs 2, 4 and the end, each
    report carrying the epochs held since the previous one; a slow epoch is reported anyway."""
    from ray import tune

    from search.tune import trainable
    from search.tune.searcher import HELD_KEY

    sent: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: sent.append(metrics))
    monkeypatch.setattr(trainable, "node_id", lambda: "node")
    reporter = trainable.EpochReporter(6, tmp_path, report_at=(2, 4))
    for e in range(1, 6):
        reporter({"epoch": e, "val_accuracy": e / 10})
    reporter.finish({"trial_finished": True})
    assert [r["training_iteration"] for r in sent] == [2, 4, 5]
    assert [[h["epoch"] for h in r.get(HELD_KEY, [])] for r in sent] == [[1], [3], []]
    assert sent[-1]["trial_finished"] and sent[0][HELD_KEY][0]["val_accuracy"] == 0.1
    assert [h["epoch"] for h in reporter.history] == [1, 2, 3, 4, 5]

    sent.clear()  # the last epoch (6) waits for finish; a slow epoch 1 goes at once
    reporter = trainable.EpochReporter(6, tmp_path, report_at=())
    reporter.sent_at -= trainable.REPORT_EVERY_S
    for e in range(1, 7):
        reporter({"epoch": e, "val_accuracy": e / 10})
    reporter.finish({"trial_finished": True})
    assert [r["training_iteration"] for r in sent] == [1, 6]
    assert [h["epoch"] for h in sent[-1][HELD_KEY]] == [2, 3, 4, 5]
    every = trainable.EpochReporter(3, tmp_path)  # report_at None: every epoch, as before
    sent.clear()
    for e in (1, 2, 3):
        every({"epoch": e, "val_accuracy": 0.5})
    every.finish({})
    assert [r["training_iteration"] for r in sent] == [1, 2, 3] and HELD_KEY not in sent[-1]


def test_a_first_report_without_the_objective_is_the_codes_mistake(tmp_path):
    """A fit reporting `accuracy` for an objective `val_accuracy` would fail every trial at its
    end with "objective is None"; its first report says so instead, as a mistake of the code."""
    import pytest

    from search.tune.trainable import EpochReporter, ContractError

    reporter = EpochReporter(3, tmp_path, report_at=(2,), expects=("val_accuracy",))
    with pytest.raises(ContractError, match=r"^report\(metrics\): the objective val_accuracy is "
                                          r"not among the reported metrics \(accuracy, epoch\)"):
        reporter({"epoch": 1, "accuracy": 0.5})
    reporter = EpochReporter(3, tmp_path, report_at=(2,), expects=("val_accuracy",))
    reporter({"epoch": 1, "val_accuracy": 0.5})  # held for epoch 2: nothing is sent yet
    with pytest.raises(ContractError, match="the epoch number"):
        reporter({"val_accuracy": 0.5})
