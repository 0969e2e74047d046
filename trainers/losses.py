"""Targets, penalties and the task objects the training loop calls.

Label smoothing has two formulas (regularization.smoothing_formula):
- "notes" (the contract of CATALOG.md): the true class gets 1 - s, every other class s/(n - 1);
- "torch" (`F.cross_entropy(label_smoothing=s)`): true class 1 - s + s/n, others s/n, i.e. the
  smoothing mass is spread over all n classes, the true one included.
For soft targets q (mixup/cutmix) both generalise linearly: notes (1 - s) q + s (1 - q)/(n - 1),
torch (1 - s) q + s/n; both keep the targets summing to one.

A task turns (model, batch) into {"loss", "output"}; the loop only backpropagates "loss" and
measures accuracy on "output". `ClassificationTask` is cross entropy on (smoothed, possibly
mixed) targets with the logits divided by a temperature during training. A distillation task
plugs in with the same contract: it holds the teacher (moved by `to(device)`, kept in eval mode),
computes the teacher's logits under no_grad inside `__call__` and returns
(1 - alpha) * CE(student, y) + alpha * distance(student, teacher) as "loss" and the student's
logits as "output". The regularisation penalties are added by the loop, whatever the task.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import TrainerError
from .optim import split_decay

FORMULAS = ("notes", "torch")


def smooth(targets: Tensor, s: float, formula: str = "notes") -> Tensor:
    """Label smoothing of a (B, n) probability tensor (one-hot or mixed)."""
    if formula not in FORMULAS:
        raise TrainerError(f"regularization.smoothing_formula: expected one of "
                           f"{', '.join(FORMULAS)}, got {formula!r}")
    n = targets.shape[-1]
    if s == 0.0 or n < 2:
        return targets
    if formula == "notes":
        return targets * (1.0 - s) + (1.0 - targets) * (s / (n - 1))
    return targets * (1.0 - s) + s / n


def smoothed_targets(y: Tensor, n: int, s: float, formula: str = "notes") -> Tensor:
    """Smoothed one-hot targets (B, n) for integer labels y (B,)."""
    return smooth(F.one_hot(y, n).float(), s, formula)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over the batch of -sum_k q_k log softmax(z)_k, in float32 whatever the autocast."""
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def temperature_at(temperature: float, schedule: str, lr: float, lr_max: float) -> float:
    """Logit temperature for the current step: constant T, or "lr": 1 + (T - 1) * lr / lr_max."""
    if schedule == "constant" or temperature == 1.0:
        return float(temperature)
    if schedule == "lr":
        return 1.0 + (temperature - 1.0) * (lr / lr_max if lr_max > 0 else 0.0)
    raise TrainerError(f"train.temperature_schedule: expected constant or lr, got {schedule!r}")


def penalized_weights(model: nn.Module) -> list[nn.Parameter]:
    """The tensors L1/L2 see: weights, not biases or normalisation parameters (as weight decay)."""
    return split_decay(model)[0]


def penalty(weights: Iterable[Tensor], l1: float = 0.0, l2: float = 0.0) -> Tensor | None:
    """l1 * sum|w| + l2/2 * sum w^2 over `weights`; None when both are off (nothing to add)."""
    if l1 == 0.0 and l2 == 0.0:
        return None
    total = None
    for w in weights:
        term = 0.0
        if l1:
            term = term + l1 * w.abs().sum()
        if l2:
            term = term + (l2 / 2.0) * w.pow(2).sum()
        total = term if total is None else total + term
    return total


class Task:
    """What the loop trains: `task(model, x, y, temperature=...) -> {"loss", "output"}`.

    y holds integer labels (B,) or soft targets (B, n) from mixup/cutmix. `to(device)` moves
    whatever the task holds besides the model (a teacher, class weights).
    """

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *,
                 temperature: float = 1.0) -> dict[str, Tensor]:
        raise NotImplementedError

    def to(self, device: torch.device) -> "Task":
        return self


class ClassificationTask(Task):
    """Cross entropy on smoothed targets; logits divided by the temperature in training."""

    def __init__(self, label_smoothing: float = 0.0, formula: str = "notes") -> None:
        smooth(torch.zeros(1, 2), 0.0, formula)  # checks the formula name up front
        self.label_smoothing = float(label_smoothing)
        self.formula = formula

    @classmethod
    def from_config(cls, config: dict) -> "ClassificationTask":
        reg = config.get("regularization", {})
        return cls(reg.get("label_smoothing", 0.0), reg.get("smoothing_formula", "notes"))

    def __call__(self, model, x, y, *, temperature=1.0):
        output = model(x)
        logits = output / temperature if temperature != 1.0 else output
        s = self.label_smoothing
        if y.ndim == 1 and (s == 0.0 or self.formula == "torch"):
            # Integer labels: torch's fused kernel is the same number and cheaper.
            loss = F.cross_entropy(logits.float(), y, label_smoothing=s)
        else:
            targets = y if y.ndim == 2 else F.one_hot(y, logits.shape[-1]).float()
            loss = soft_cross_entropy(logits, smooth(targets, s, self.formula))
        return {"loss": loss, "output": output}
