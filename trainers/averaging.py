"""Weight averaging of the evaluated model (train.averaging): SWA or EMA.

- swa: an equal average of the weights at the end of every epoch from `swa_start` (1-based; null
  = the last 25% of the epochs), torch.optim.swa_utils.AveragedModel; BatchNorm statistics of
  the average are recomputed with `update_bn` over the training data after each update, since
  averaged weights do not match any running statistics seen in training.
- ema: an exponential moving average updated after every optimiser step,
  w_ema <- decay * w_ema + (1 - decay) * w (get_ema_multi_avg_fn), buffers averaged too.
Once averaging has begun, validation, model selection and the test use the averaged model.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from .errors import TrainerError

MODES = ("none", "swa", "ema")


def swa_start_epoch(swa_start: int | None, epochs: int) -> int:
    """First averaged epoch (1-based): the given one, or the start of the last 25%."""
    if swa_start is not None:
        return int(swa_start)
    return max(1, epochs - math.ceil(epochs / 4) + 1)


class WeightAverager:
    def __init__(self, model: nn.Module, mode: str, *, epochs: int, swa_start: int | None = None,
                 ema_decay: float = 0.999) -> None:
        if mode not in MODES:
            raise TrainerError(f"train.averaging: expected one of {', '.join(MODES)}, "
                               f"got {mode!r}")
        self.mode = mode
        self.start = swa_start_epoch(swa_start, epochs)
        self.averaged: AveragedModel | None = None
        if mode == "swa":
            self.averaged = AveragedModel(model)
        elif mode == "ema":
            self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay),
                                          use_buffers=True)

    @property
    def active(self) -> bool:
        """True once the average holds at least one model."""
        return self.averaged is not None and int(self.averaged.n_averaged) > 0

    def after_step(self, model: nn.Module) -> None:
        if self.mode == "ema":
            self.averaged.update_parameters(model)

    def after_epoch(self, model: nn.Module, epoch: int,
                    train_batches: Callable[[], Iterable]) -> None:
        """`epoch` is 1-based; `train_batches()` yields (x, y) for the BatchNorm refresh."""
        if self.mode == "swa" and epoch >= self.start:
            self.averaged.update_parameters(model)
            update_bn(train_batches(), self.averaged)

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The model to validate and test: the average once it exists, else `model`."""
        return self.averaged.module if self.active else model

    def state_dict(self) -> dict | None:
        return None if self.averaged is None else self.averaged.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        if self.averaged is not None and state is not None:
            self.averaged.load_state_dict(state)
