"""Which part of each registry model is the backbone and which layer is the head.

Transfer learning freezes the backbone (or its first `freeze` groups); the kNN head and a new
class count replace the head, the last Linear layer (the dropout before it is the identity at
inference). Keyed by `model.name` like trainers.models.MODELS; a model missing here (a user's
factory) cannot be used in transfer mode or with a kNN head.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

from torch import nn

from ..errors import TrainerError
from ..layers import DropConnectLinear


@dataclass(frozen=True)
class Anatomy:
    """`groups(model)`: the backbone as ordered groups of modules (what `freeze: N` counts);
    `head`: the dotted name of the classifier layer."""

    groups: Callable[[nn.Module], list[tuple[nn.Module, ...]]]
    head: str
    doc: str


ANATOMY: dict[str, Anatomy] = {
    "mlp": Anatomy(lambda m: [(b,) for b in m.blocks], "classifier",
                   "groups: the hidden layers"),
    "cnn": Anatomy(lambda m: [(b,) for b in m.blocks], "classifier",
                   "groups: the convolutional blocks (the head's hidden layer trains)"),
    "cnn1d": Anatomy(lambda m: [(b,) for b in m.blocks], "classifier",
                     "groups: the convolutional blocks (the head's hidden layer trains)"),
    "resnet18": Anatomy(lambda m: [(m.conv1, m.bn1), m.layer1, m.layer2, m.layer3, m.layer4],
                        "fc", "groups: the stem, layer1..layer4"),
    "resnet34": Anatomy(lambda m: [(m.conv1, m.bn1), m.layer1, m.layer2, m.layer3, m.layer4],
                        "fc", "groups: the stem, layer1..layer4"),
    "mobilenet_v3_small": Anatomy(lambda m: [(f,) for f in m.features], "classifier.3",
                                  "groups: the stages of `features`"),
}


def anatomy(config: dict, what: str) -> Anatomy:
    name = config["model"]["name"]
    if name not in ANATOMY:
        raise TrainerError(f"{what}: model {name!r} does not say which layers are its backbone "
                           f"and head (known for {', '.join(ANATOMY)}); use finetune mode full "
                           "without knn")
    return ANATOMY[name]


def get_module(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted)


def set_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def new_head(model: nn.Module, dotted: str, num_classes: int) -> None:
    """A freshly initialised classifier for another class count (transfer to a new task)."""
    old = get_module(model, dotted)
    p = old.p if isinstance(old, DropConnectLinear) else 0.0
    set_module(model, dotted, DropConnectLinear(old.in_features, num_classes,
                                                old.bias is not None, p))


def frozen_groups(model: nn.Module, config: dict, freeze: int | None,
                  what: str) -> list[nn.Module]:
    """The modules transfer mode freezes: every backbone group, or the first `freeze`."""
    groups = anatomy(config, what).groups(model)
    if freeze is not None and freeze > len(groups):
        raise TrainerError(f"{what}: freeze {freeze} exceeds the {len(groups)} backbone groups "
                           f"of model {config['model']['name']!r} "
                           f"({anatomy(config, what).doc})")
    chosen = groups if freeze is None else groups[:freeze]
    return [m for group in chosen for m in group]


@contextlib.contextmanager
def frozen(modules: list[nn.Module]) -> Iterator[None]:
    """No gradients for these modules and eval mode pinned (BatchNorm statistics and dropout
    stay as they are whatever `model.train()` the loop calls), undone on exit."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    subs = [s for m in modules for s in m.modules()]
    for p in params:
        p.requires_grad_(False)
    for s in subs:
        s.eval()
        s.train = _stay_eval.__get__(s)  # instance attribute: nn.Module.train recursion uses it
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for s in subs:
            del s.train


def _stay_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    self.training = False
    return self
