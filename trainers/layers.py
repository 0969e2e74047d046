"""Building blocks shared by the models: activations, DropConnect, weight initialisation and
gradient checkpointing.
"""
from __future__ import annotations

import contextlib
import math
from functools import partial
from typing import Callable, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU,
    "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}
# Kaiming gain per activation; torch knows relu, leaky_relu, tanh and sigmoid. ELU, GELU and
# SiLU behave like ReLU for positive inputs, so they take ReLU's gain.
NONLINEARITY: dict[str, tuple[str, float]] = {
    "relu": ("relu", 0.0), "leaky_relu": ("leaky_relu", 0.01), "elu": ("relu", 0.0),
    "gelu": ("relu", 0.0), "silu": ("relu", 0.0), "tanh": ("tanh", 0.0),
    "sigmoid": ("sigmoid", 0.0),
}


class DropConnectLinear(nn.Linear):
    """A Linear layer with DropConnect: at train time every weight is kept with probability
    1 - p and scaled by 1 / (1 - p) (one mask per forward pass), so the expected weight is
    unchanged; at eval time it is a plain Linear. The bias is never dropped."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 p: float = 0.0) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropConnect p must be in [0, 1), got {p}")
        self.p = p

    @classmethod
    def from_linear(cls, linear: nn.Linear, p: float) -> "DropConnectLinear":
        """The same layer (weights copied) with DropConnect p."""
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, p)
        with torch.no_grad():
            new.weight.copy_(linear.weight)
            if linear.bias is not None:
                new.bias.copy_(linear.bias)
        return new

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return F.linear(x, self.weight, self.bias)
        mask = torch.empty_like(self.weight).bernoulli_(1.0 - self.p)
        return F.linear(x, self.weight * mask / (1.0 - self.p), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


def dropout(p: float) -> nn.Module:
    """Inverted dropout (nn.Dropout scales kept units by 1/(1-p) at train time)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


# --------------------------------------------------------------------------- initialisation
def _fan_in(w: Tensor) -> int:
    return w.shape[1] * math.prod(w.shape[2:])


def _eye(m: nn.Module, w: Tensor) -> None:
    if w.dim() == 2:
        nn.init.eye_(w)
    else:  # convolutions: the identity kernel (centre tap), per group
        nn.init.dirac_(w, groups=getattr(m, "groups", 1))


def _kaiming(w: Tensor, act: str, uniform: bool) -> None:
    nonlinearity, slope = NONLINEARITY.get(act, ("relu", 0.0))
    fn = nn.init.kaiming_uniform_ if uniform else nn.init.kaiming_normal_
    fn(w, a=slope, mode="fan_in", nonlinearity=nonlinearity)


# scheme -> f(module, weight, activation). uniform/normal/constant are scaled by the fan-in so
# that they give usable signal magnitudes at any width: U(±1/√fan_in), N(0, 1/√fan_in) (LeCun)
# and 1/fan_in (every unit outputs the mean of its inputs).
INITS: dict[str, Callable[[nn.Module, Tensor, str], None]] = {
    "uniform": lambda m, w, a: nn.init.uniform_(w, -_fan_in(w) ** -0.5, _fan_in(w) ** -0.5),
    "normal": lambda m, w, a: nn.init.normal_(w, 0.0, _fan_in(w) ** -0.5),
    "constant": lambda m, w, a: nn.init.constant_(w, 1.0 / _fan_in(w)),
    "eye": lambda m, w, a: _eye(m, w),
    "xavier_uniform": lambda m, w, a: nn.init.xavier_uniform_(w),
    "xavier_normal": lambda m, w, a: nn.init.xavier_normal_(w),
    "kaiming_uniform": lambda m, w, a: _kaiming(w, a, uniform=True),
    "kaiming_normal": lambda m, w, a: _kaiming(w, a, uniform=False),
    "orthogonal": lambda m, w, a: nn.init.orthogonal_(w),
}


def init_weights(model: nn.Module, scheme: str, activation: str = "relu") -> None:
    """Re-initialise every Conv and Linear weight with `scheme` and zero their biases;
    "default" keeps the constructors' own initialisation (PyTorch's, or torchvision's).
    Normalisation layers keep weight 1, bias 0."""
    if scheme == "default":
        return
    init = INITS[scheme]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                init(m, m.weight, activation)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------- gradient checkpointing
_NORMS = (nn.modules.batchnorm._BatchNorm,)


@contextlib.contextmanager
def _frozen_norm_stats(block: nn.Module) -> Iterator[None]:
    """During the recomputation in backward, BatchNorm must not update its running statistics a
    second time: momentum 0 for the duration, and the batch counter restored afterwards."""
    norms = [m for m in block.modules() if isinstance(m, _NORMS) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def _contexts(block: nn.Module) -> tuple[contextlib.AbstractContextManager, ...]:
    return contextlib.nullcontext(), _frozen_norm_stats(block)


class GradCheckpointing:
    """Mixin for nn.Modules made of a sequence of blocks: `set_grad_checkpointing(True)` makes the
    training forward keep only each block's input and recompute the block in backward
    (`torch.utils.checkpoint`, non-reentrant): less activation memory, about a third more compute.
    Gradients, RNG-dependent layers and BatchNorm statistics come out the same."""

    grad_checkpointing: bool = False

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Turn recomputation of block activations in backward on or off."""
        self.grad_checkpointing = bool(enabled)

    def run_blocks(self, blocks: Iterable[nn.Module], x: Tensor) -> Tensor:
        """x through `blocks` in order, checkpointing each when enabled and training."""
        training = self.training  # type: ignore[attr-defined]
        active = self.grad_checkpointing and training and torch.is_grad_enabled()
        for block in blocks:
            if active:
                x = checkpoint(block, x, use_reentrant=False, context_fn=partial(_contexts, block))
            else:
                x = block(x)
        return x
