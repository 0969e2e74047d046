"""Optimisers: the registry keyed by `optimizer.name` and the two pure steps config -> optimiser.

Weight decay follows torch: for sgd, adagrad, rmsprop and adam it is *coupled* (wd * w is added
to the gradient, i.e. an L2 term seen through the optimiser's preconditioning); for adamw it is
*decoupled* (w <- w - lr * wd * w, outside the adaptive update, Loshchilov & Hutter). The notes
(CATALOG.md) say these are not the same thing; both are available by choosing the optimiser.
`regularization.l1`/`.l2` are loss terms instead (losses.py).

Biases and normalisation parameters (every tensor with ndim <= 1) get no weight decay: a bias
shifts, it does not add capacity, and decaying a BatchNorm scale only shrinks a scale the next
layer undoes, which fights the normalisation instead of regularising (the usual practice in
timm and most training recipes). The same split decides which tensors the L1/L2 penalties see.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import TrainerError
from .settings import resolve_group


@dataclass(frozen=True)
class OptimInfo:
    """One optimiser: its torch class, and which catalog keys become which keyword arguments."""

    name: str
    opt_class: type[torch.optim.Optimizer]
    kwargs: dict[str, str] = field(default_factory=dict)  # catalog key -> torch keyword
    decoupled_decay: bool = False


_ADAM_KEYS = {"betas": "betas", "eps": "eps", "amsgrad": "amsgrad"}
OPTIMIZERS: dict[str, OptimInfo] = {
    "sgd": OptimInfo("sgd", torch.optim.SGD,
                     {"momentum": "momentum", "nesterov": "nesterov", "dampening": "dampening"}),
    "adagrad": OptimInfo("adagrad", torch.optim.Adagrad, {"lr_decay": "lr_decay", "eps": "eps"}),
    "rmsprop": OptimInfo("rmsprop", torch.optim.RMSprop,
                         {"alpha": "alpha", "momentum": "momentum", "eps": "eps",
                          "centered": "centered"}),
    "adam": OptimInfo("adam", torch.optim.Adam, dict(_ADAM_KEYS)),
    "adamw": OptimInfo("adamw", torch.optim.AdamW, dict(_ADAM_KEYS), decoupled_decay=True),
}


def optimizer_kwargs(cfg: dict) -> dict:
    """The keyword arguments of the torch optimiser for an `optimizer` config group (pure);
    options the group leaves out take their catalog defaults, wrong ones raise TrainerError."""
    cfg = resolve_group("optimizer", cfg)
    info = OPTIMIZERS[cfg["name"]]
    kwargs = {"lr": float(cfg["lr"]), "weight_decay": float(cfg["weight_decay"])}
    for key, torch_key in info.kwargs.items():
        value = cfg[key]
        kwargs[torch_key] = tuple(value) if isinstance(value, list) else value
    if kwargs.get("nesterov") and not kwargs.get("momentum", 0.0) > 0.0:
        raise TrainerError("optimizer.nesterov: Nesterov momentum needs optimizer.momentum > 0, "
                           f"but got momentum={kwargs.get('momentum', 0.0)}; set a momentum such "
                           "as 0.9 or nesterov: false")
    return kwargs


def split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, biases and normalisation parameters) of the trainable parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = split_decay(model)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def create_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """The optimiser for `model` from an `optimizer` config group."""
    cfg = resolve_group("optimizer", cfg)
    kwargs = optimizer_kwargs(cfg)
    info = OPTIMIZERS[cfg["name"]]
    groups = param_groups(model, kwargs.pop("weight_decay"))
    if not groups:
        raise TrainerError("model: it has no trainable parameters to optimise")
    if fused_available(info, model):
        kwargs["fused"] = True
    return info.opt_class(groups, **kwargs)


FUSED = ("sgd", "adam", "adamw")  # torch's fused CUDA kernels: one launch per step, not per tensor


def fused_available(info: OptimInfo, model: nn.Module) -> bool:
    """Whether the optimiser has a fused CUDA implementation and every parameter is on a GPU."""
    params = list(model.parameters())
    return info.name in FUSED and bool(params) and all(
        p.is_cuda and p.is_floating_point() for p in params)
