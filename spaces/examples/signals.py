"""A 1-D signal example to copy: 10 classes of noisy waveforms generated offline (seeded, no
download), N×1×L, and a Conv1d model factory of one's own whose channels, kernel size and depth
the space searches (spaces/signals_cnn1d.yaml).

    data:  {dataset: factory, factory: "spaces.examples.signals:load"}
    model: {name: factory, factory: "spaces.examples.signals:make_model", kwargs: {}}

Classes: 5 frequencies × 2 shapes (a sinusoid, or a chirp rising from that frequency), each
with a random phase, amplitude, small frequency jitter and Gaussian noise; nearby frequencies
overlap under the noise, so the task is not trivial. `load()` returns the fixed split
{"train": (X, y), "val": (X, y), "test": (X, y)} (per class 320/80/100 samples by default: a
4,000/1,000 train/test split with validation carved from the training part); `load(parts=False)`
the same samples pooled as (X, y), train then val then test. X is float32, y int64.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

N_CLASSES = 10
FREQUENCIES = (2.0, 3.0, 4.0, 5.0, 6.0)  # cycles per signal
PARTS = {"train": 320, "val": 80, "test": 100}  # samples per class
PART_SEEDS = {"train": 1, "val": 2, "test": 3}  # a part does not change with another's size


def waveforms(labels: np.ndarray, length: int, noise: float,
              rng: np.random.Generator) -> np.ndarray:
    """One N×1×L signal per label (see the module's docstring)."""
    t = np.linspace(0.0, 1.0, length, endpoint=False)[None, :]
    n = len(labels)
    freq = np.asarray(FREQUENCIES)[labels % len(FREQUENCIES)][:, None]
    freq = freq * rng.uniform(0.93, 1.07, (n, 1))
    chirp = (labels >= len(FREQUENCIES))[:, None]
    phase = 2 * np.pi * (freq * t + np.where(chirp, 1.5 * t ** 2, 0.0))
    amp = rng.uniform(0.6, 1.4, (n, 1))
    x = amp * np.sin(phase + rng.uniform(0, 2 * np.pi, (n, 1)))
    x += rng.normal(0.0, noise, x.shape)
    return x[:, None, :].astype(np.float32)


def load(parts: bool = True, length: int = 128, noise: float = 0.8, seed: int = 0,
         per_class: dict | None = None):
    """The signals: the fixed split as a dict of (X, y) tensors, or pooled (X, y)."""
    sizes = {**PARTS, **(per_class or {})}
    split = {}
    for name, count in sizes.items():
        rng = np.random.default_rng([seed, PART_SEEDS[name]])
        labels = np.repeat(np.arange(N_CLASSES), count)
        x = waveforms(labels, length, noise, rng)
        split[name] = (torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64)))
    if parts:
        return split
    return (torch.cat([split[k][0] for k in ("train", "val", "test")]),
            torch.cat([split[k][1] for k in ("train", "val", "test")]))


class CNN1d(nn.Module):
    """`depth` × (Conv1d, BatchNorm, ReLU, MaxPool 2), channels doubling from `channels`, then
    global average pooling and a linear head: any signal length."""

    def __init__(self, in_channels: int, num_classes: int, channels: int, kernel: int,
                 depth: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c_out = in_channels, channels
        for _ in range(depth):
            layers += [nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
                       nn.BatchNorm1d(c_out), nn.ReLU(), nn.MaxPool1d(2, ceil_mode=True)]
            c_in, c_out = c_out, c_out * 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[2] == 1:  # N×C×1×L: a trainer that sees signals as images
            x = x.squeeze(2)
        return self.head(self.features(x))


def make_model(num_classes: int = N_CLASSES, input_shape: tuple[int, ...] | None = None,
               in_channels: int | None = None, channels: int = 16, kernel: int = 7,
               depth: int = 2, dropout: float = 0.0) -> nn.Module:
    """The Conv1d network for signals of `input_shape` (C×L, one sample) or `in_channels`."""
    c = input_shape[0] if input_shape else (in_channels or 1)
    return CNN1d(int(c), num_classes, int(channels), int(kernel), int(depth), float(dropout))
