"""Tiny real data and models for the training-loop tests: a few hundred 8x8 images of three
classes that a small network separates in a couple of epochs on one thread."""
from __future__ import annotations

import copy

import torch
from torch import nn

from trainers.batches import TensorSplit
from trainers.datasets import Data

torch.set_num_threads(1)


def tiny_data(n: int = 96, *, classes: int = 3, channels: int = 1, size: int = 8,
              seed: int = 0) -> Data:
    """Class c lights up the c-th horizontal band of the image, plus Gaussian noise."""
    g = torch.Generator().manual_seed(seed)

    def split(count: int) -> TensorSplit:
        y = torch.arange(count) % classes
        x = 0.6 * torch.randn(count, channels, size, size, generator=g)
        band = size // classes
        for c in range(classes):
            x[y == c, :, c * band:(c + 1) * band, :] += 1.5
        return TensorSplit(x, y)

    return Data(train=split(n), val=split(n // 2), test=split(n // 2), num_classes=classes,
                in_channels=channels, image_size=(size, size), mean=(0.0,) * channels,
                std=(1.0,) * channels, in_memory=True, name="tiny")


class TinyNet(nn.Module):
    """conv (+ optional BatchNorm) -> global pool -> dropout -> linear."""

    def __init__(self, channels: int = 1, classes: int = 3, *, batch_norm: bool = True,
                 dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(channels, 8, 3, padding=1, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(8) if batch_norm else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(8 * 4, classes)

    def forward(self, x):
        x = torch.relu(self.norm(self.conv(x)))
        x = nn.functional.adaptive_avg_pool2d(x, (4, 1)).flatten(1)
        return self.head(self.drop(x))


def tiny_config(**groups) -> dict:
    """A fast config: one thread, CPU, 3 epochs, the given groups merged over it."""
    cfg = {"train": {"epochs": 3, "threads": 1, "device": "cpu"}, "optimizer": {"lr": 0.01},
           "data": {"batch_size": 16}}
    for name, values in groups.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    return cfg


def fresh(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def curves(history: list[dict]) -> list[dict]:
    """The history without the wall-clock fields, for exact comparisons."""
    return [{k: v for k, v in m.items() if k not in ("epoch_time", "samples_per_sec")}
            for m in history]


def plain_values_only(obj) -> bool:
    """True when `obj` holds tensors and plain values only (nothing that unpickles code)."""
    if isinstance(obj, dict):
        return all(isinstance(k, (str, int)) and plain_values_only(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(plain_values_only(v) for v in obj)
    return obj is None or isinstance(obj, (torch.Tensor, str, int, float, bool))
