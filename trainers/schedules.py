"""Learning-rate schedules: the registry keyed by `scheduler.name`, plus linear warmup.

Every schedule is a torch.optim.lr_scheduler class. onecycle is stepped once per optimiser step;
the others once per epoch, plateau with the validation loss. Warmup comes first and the schedule
follows it: during the first `warmup_epochs` the lr rises linearly per optimiser step from
`warmup_start_factor * lr` towards `lr`; then the selected schedule runs over the remaining
epochs as if they were the whole run (cosine over E - W epochs, onecycle over the remaining
steps, the step/exponential/time counters start at 0). So an epoch e >= W trains with the
schedule's lr for epoch e - W. onecycle has its own ramp (`pct_start`), so with onecycle the
usual choice is warmup_epochs 0. OneCycleLR's momentum cycling is off: the optimiser's momentum and
betas stay what the config says.

`Schedule` hides all of this from the loop: `step_batch()` after every optimiser step,
`step_epoch(val_loss)` after every epoch, `state_dict()/load_state_dict()` for checkpoints,
and `replay()` to bring a schedule of a changed config to a checkpoint's position.
"""
from __future__ import annotations

import math

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.optim import lr_scheduler as sched

from .settings import resolve_group

# build(optimizer, cfg, epochs, steps): epochs and optimiser steps the schedule spans.
Builder = Callable[[torch.optim.Optimizer, dict, int, int], "sched.LRScheduler | None"]


@dataclass(frozen=True)
class ScheduleInfo:
    name: str
    build: Builder
    per_step: bool = False  # stepped after every optimiser step instead of every epoch
    uses_metric: bool = False  # stepped with the validation loss


def _none(opt, cfg, epochs, steps):
    return None


def _step(opt, cfg, epochs, steps):
    return sched.StepLR(opt, step_size=cfg["step_size"], gamma=cfg["gamma"])


def _exponential(opt, cfg, epochs, steps):
    return sched.ExponentialLR(opt, gamma=cfg["gamma"])


def _plateau(opt, cfg, epochs, steps):
    return sched.ReduceLROnPlateau(opt, mode="min", factor=cfg["factor"],
                                   patience=cfg["patience"], threshold=cfg["threshold"])


def _cosine(opt, cfg, epochs, steps):
    return sched.CosineAnnealingLR(opt, T_max=max(1, epochs), eta_min=cfg["eta_min"])


def _onecycle(opt, cfg, epochs, steps):
    total, pct = max(1, steps), float(cfg["pct_start"])
    if math.isclose(pct * total, 1.0):
        # torch divides by zero when the rise is exactly one step (0.25 of 4 steps): a rise that
        # short is no rise, as torch does for any shorter one, so start at the peak.
        pct = 0.999 / total
    return sched.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                            total_steps=total, pct_start=pct,
                            anneal_strategy=cfg["anneal"], div_factor=cfg["div_factor"],
                            final_div_factor=cfg["final_div_factor"], cycle_momentum=False)


def _time(opt, cfg, epochs, steps):
    decay = float(cfg["decay"])
    return sched.LambdaLR(opt, lambda epoch: 1.0 / (1.0 + decay * epoch))


SCHEDULERS: dict[str, ScheduleInfo] = {
    "none": ScheduleInfo("none", _none),
    "step": ScheduleInfo("step", _step),
    "exponential": ScheduleInfo("exponential", _exponential),
    "plateau": ScheduleInfo("plateau", _plateau, uses_metric=True),
    "cosine": ScheduleInfo("cosine", _cosine),
    "onecycle": ScheduleInfo("onecycle", _onecycle, per_step=True),
    "time": ScheduleInfo("time", _time),
}


class Schedule:
    """Warmup + the selected schedule on one optimiser.

    `steps_per_epoch[e]` is the number of optimiser steps of epoch e (it varies under a
    batch-size schedule); its length is the number of epochs.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: dict,
                 steps_per_epoch: Sequence[int]) -> None:
        cfg = resolve_group("scheduler", cfg)
        self.optimizer = optimizer
        self.info = SCHEDULERS[cfg["name"]]
        self.lr_max = max(g["lr"] for g in optimizer.param_groups)
        self.steps_per_epoch = [int(n) for n in steps_per_epoch]
        self._base = [g["lr"] for g in optimizer.param_groups]
        self.warmup_epochs = min(int(cfg["warmup_epochs"]), len(steps_per_epoch))
        self.warmup_steps = int(sum(steps_per_epoch[:self.warmup_epochs]))
        self.start_factor = float(cfg["warmup_start_factor"])
        self.main = self.info.build(optimizer, cfg, len(steps_per_epoch) - self.warmup_epochs,
                                    int(sum(steps_per_epoch[self.warmup_epochs:])))
        # The schedule's own lr at its step 0, put back when the warmup ends.
        self._main_lrs = [g["lr"] for g in optimizer.param_groups]
        self.steps = 0  # optimiser steps taken
        self.epochs = 0  # epochs finished
        if self.warmup_steps > 0:
            self._set(self._warmup_factor())

    @property
    def lr(self) -> float:
        """The lr the next optimiser step uses."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _warmup_factor(self) -> float:
        frac = min(1.0, self.steps / self.warmup_steps)
        return self.start_factor + (1.0 - self.start_factor) * frac

    def _set(self, factor: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self._base):
            group["lr"] = base * factor

    def _end_warmup(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self._main_lrs):
            group["lr"] = lr

    def step_batch(self) -> None:
        self.steps += 1
        if self.steps < self.warmup_steps:
            self._set(self._warmup_factor())
        elif self.steps == self.warmup_steps:
            self._end_warmup()
        elif self.info.per_step and self.main is not None:
            self.main.step()

    def step_epoch(self, val_loss: float | None = None) -> None:
        self.epochs += 1
        if self.epochs < self.warmup_epochs:
            return
        if self.epochs == self.warmup_epochs:
            if self.steps < self.warmup_steps:  # fewer steps than planned: still hand over
                self._end_warmup()
            return
        if self.main is None or self.info.per_step:
            return
        if self.info.uses_metric:
            self.main.step(float("inf") if val_loss is None else val_loss)
        else:
            self.main.step()

    def state_dict(self) -> dict:
        return {"steps": self.steps, "epochs": self.epochs, "main_lrs": list(self._main_lrs),
                "main": None if self.main is None else self.main.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Call after the optimiser's own load_state_dict (which restores the current lr)."""
        self.steps, self.epochs = int(state["steps"]), int(state["epochs"])
        self._main_lrs = list(state["main_lrs"])
        if self.main is not None and state["main"] is not None:
            self.main.load_state_dict(state["main"])

    def replay(self, state: dict, val_losses: Sequence[float]) -> None:
        """Bring this fresh schedule (nothing stepped yet) to the position of `state`, the
        state_dict of a schedule of another config (a changed lr, warmup, ...): its optimiser
        steps and epochs are taken again, epoch by epoch, the plateau rule seeing the validation
        losses the run saw. From there the lr follows this schedule's config: same position,
        this config's peak. Every schedule here is a function of that position (and the losses),
        so a replay of the same config gives exactly the restored lr."""
        steps = min(int(state["steps"]), sum(self.steps_per_epoch))  # never past the end
        epochs = int(state["epochs"])
        with warnings.catch_warnings():  # no optimiser step is taken during the replay
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step")
            for e in range(epochs):
                per_epoch = self.steps_per_epoch[e] if e < len(self.steps_per_epoch) else 0
                for _ in range(min(per_epoch, steps - self.steps)):
                    self.step_batch()
                self.step_epoch(val_losses[e] if e < len(val_losses) else None)
            while self.steps < steps:
                self.step_batch()
