"""Checkpoints written by the loop, and resuming from them."""
from __future__ import annotations

import pytest
import torch

from tiny_training import TinyNet, curves, plain_values_only, tiny_config, tiny_data
from trainers.errors import TrainerError
from trainers.loop import fit
from trainers.schedules import SCHEDULERS, Schedule
from trainers.settings import resolve_group

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


def _param_groups(path) -> list[dict]:
    """The optimiser's hyperparameters in a checkpoint (what the next step will use)."""
    groups = torch.load(path, weights_only=True)["optimizer"]["param_groups"]
    return [{k: v for k, v in g.items() if k != "params"} for g in groups]


@pytest.mark.parametrize("scheduler", [{"name": "onecycle"}, {"name": "step", "step_size": 1,
                                                               "gamma": 0.5},
                                       {"name": "cosine", "warmup_epochs": 2}])
def test_resuming_with_changed_hyperparameters_takes_them_from_the_config(tmp_path, scheduler):
    """A PBT mutation: the donor's checkpoint continues under another lr / weight decay /
    betas. The moments are the checkpoint's; the hyperparameters and the schedule's peak are
    the new config's, at the schedule's position: epoch 3 trains with the lr an uninterrupted
    run of the new config has at epoch 3."""
    old = tiny_config(optimizer={"lr": 0.02, "weight_decay": 1e-4}, scheduler=scheduler)
    new = tiny_config(optimizer={"lr": 0.005, "weight_decay": 0.05, "betas": [0.8, 0.95]},
                      scheduler=scheduler)
    whole_new = fit(new, data=DATA, model=TinyNet(), checkpoint_dir=str(tmp_path / "new"))
    whole_old = fit(old, data=DATA, model=TinyNet(), checkpoint_dir=str(tmp_path / "old"))
    fit(old, data=DATA, model=TinyNet(), checkpoint_dir=str(tmp_path / "a"),
        report=lambda m: m["epoch"] == 2)
    donor = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    rest = fit(new, data=DATA, model=TinyNet(), checkpoint_dir=str(tmp_path / "b"),
               resume_from=str(tmp_path / "a" / "last.pt"))
    assert [h["epoch"] for h in rest.history] == [1, 2, 3]
    assert rest.history[2]["lr"] == pytest.approx(whole_new.history[2]["lr"], rel=1e-9)
    assert rest.history[2]["lr"] != pytest.approx(whole_old.history[2]["lr"], rel=1e-3)
    # after the last step: the new config's lr, weight decay and betas, at the same position
    assert _param_groups(tmp_path / "b" / "last.pt") == _param_groups(tmp_path / "new" / "last.pt")
    resumed = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert resumed["scheduler"]["steps"] == 3 * donor["scheduler"]["steps"] // 2
    # the moments went on from the checkpoint's (Adam's step counter counts all 3 epochs)
    steps = {float(s["step"]) for s in resumed["optimizer"]["state"].values()}
    assert steps == {float(resumed["scheduler"]["steps"])}
    assert rest.history[:2] == donor["history"]


def test_resuming_into_amsgrad_starts_its_maximum_from_the_moments(tmp_path):
    fit(tiny_config(train={"epochs": 1}), data=DATA, model=TinyNet(),
        checkpoint_dir=str(tmp_path))
    result = fit(tiny_config(train={"epochs": 2}, optimizer={"amsgrad": True}), data=DATA,
                 model=TinyNet(), resume_from=str(tmp_path / "last.pt"))
    assert len(result.history) == 2 and result.history[1]["train_loss"] < 5


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_a_replayed_schedule_of_the_same_config_is_the_saved_one(name):
    """Schedule.replay is a function of the position (and the losses the plateau rule saw):
    replaying the same config lands on the saved lr, for every schedule in the registry."""
    cfg = {"name": name, "warmup_epochs": 1, "step_size": 1, "patience": 0}
    cfg = {k: v for k, v in cfg.items() if k in resolve_group("scheduler", {"name": name})}
    losses = [1.0, 0.9, 0.95, 0.97, 0.99]

    def schedule():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        return Schedule(opt, cfg, [3, 3, 2, 4, 3, 3])

    run = schedule()
    for loss, steps in zip(losses, run.steps_per_epoch):
        for _ in range(steps):
            run.optimizer.step()
            run.step_batch()
        run.step_epoch(loss)
    again = schedule()
    again.replay(run.state_dict(), losses)
    assert (again.steps, again.epochs) == (run.steps, run.epochs)
    assert again.lr == pytest.approx(run.lr, rel=1e-12)
    assert (run.lr != 0.1) == (name != "none")  # every schedule but none moved the lr


@pytest.mark.parametrize("scheduler", [{"name": "onecycle"}, {"name": "cosine"}])
def test_a_longer_horizon_continues_on_the_schedule_of_the_new_epochs(tmp_path, scheduler):
    """`search run --extend`: a finished 2-epoch run continues to 4 epochs. Only epochs 3-4
    train, and the schedule is the 4-epoch one at the checkpoint's position (Schedule.replay),
    not the finished 2-epoch one run past its end."""
    short = fit(tiny_config(train={"epochs": 2}, scheduler=scheduler), data=DATA,
                model=TinyNet(), checkpoint_dir=str(tmp_path / "a"))
    whole = fit(tiny_config(train={"epochs": 4}, scheduler=scheduler), data=DATA,
                model=TinyNet(), checkpoint_dir=str(tmp_path / "w"))
    trained = []
    longer = fit(tiny_config(train={"epochs": 4}, scheduler=scheduler), data=DATA,
                 model=TinyNet(), checkpoint_dir=str(tmp_path / "b"),
                 resume_from=str(tmp_path / "a" / "last.pt"),
                 report=lambda m: trained.append(m["epoch"]))
    assert trained == [3, 4] and [h["epoch"] for h in longer.history] == [1, 2, 3, 4]
    assert longer.history[:2] == short.history
    assert longer.history[2]["lr"] == pytest.approx(whole.history[2]["lr"], rel=1e-9)
    assert longer.history[2]["lr"] > 10 * short.history[1]["lr"] or scheduler["name"] == "cosine"
