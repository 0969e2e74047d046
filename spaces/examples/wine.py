"""A tabular example to copy: scikit-learn's wine data (178 samples, 13 features, 3 classes,
shipped with scikit-learn, no download) and a model factory of one's own, an MLP whose width,
depth, dropout and activation the space searches (spaces/wine_mlp.yaml).

    data:  {dataset: factory, factory: "spaces.examples.wine:load"}
    model: {name: factory, factory: "spaces.examples.wine:make_model", kwargs: {}}

`load()` returns the fixed split {"train": (X, y), "val": (X, y), "test": (X, y)} (60/20/20,
stratified, seeded), every part standardised by the training part's mean and std; X is N×13
float32, y int64. `load(parts=False)` returns the same samples pooled as one (X, y), train
then val then test, for a trainer that makes its own split.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

N_FEATURES = 13
N_CLASSES = 3
FRACTIONS = (0.6, 0.2, 0.2)
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def split_indices(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Stratified train/val/test indices (FRACTIONS), the same for the same seed."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = round(len(idx) * FRACTIONS[1]), round(len(idx) * FRACTIONS[2])
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def load(parts: bool = True, seed: int = 0):
    """The wine data: the fixed split as a dict of (X, y) tensors, or pooled (X, y)."""
    from sklearn.datasets import load_wine

    data = load_wine()
    x, y = data.data.astype(np.float64), data.target.astype(np.int64)
    idx = split_indices(y, seed)
    mean, std = x[idx["train"]].mean(0), x[idx["train"]].std(0)
    x = ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    split = {k: (torch.from_numpy(x[i]), torch.from_numpy(y[i])) for k, i in idx.items()}
    if parts:
        return split
    return (torch.cat([split[k][0] for k in ("train", "val", "test")]),
            torch.cat([split[k][1] for k in ("train", "val", "test")]))


class MLP(nn.Module):
    """Flatten, then `depth` × (Linear, activation, dropout) of `hidden` units, then the head."""

    def __init__(self, in_features: int, num_classes: int, hidden: int, depth: int,
                 dropout: float, activation: str) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {activation!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_model(num_classes: int = N_CLASSES, input_shape: tuple[int, ...] | None = None,
               in_channels: int | None = None, hidden: int = 64, depth: int = 2,
               dropout: float = 0.1, activation: str = "relu") -> nn.Module:
    """The MLP for inputs of `input_shape` (one sample's shape; any layout, it is flattened),
    13 wine features when the trainer does not say. `in_channels` is accepted for trainers
    that pass it and not needed."""
    in_features = math.prod(input_shape) if input_shape else N_FEATURES
    return MLP(in_features, num_classes, int(hidden), int(depth), float(dropout), activation)
