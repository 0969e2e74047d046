"""Data factories of every sample shape, and factories that get it wrong, for the tests of
bringing one's own data (importable as `tests.trainers.shaped_data` by Ray workers too).

Each learnable set puts the class in a few features (or a stretch of the signal) plus noise,
standardised-looking values outside [0, 1], so a tiny model separates it in an epoch or two.
"""
from __future__ import annotations

import numpy as np
import torch


def _labels(n: int, classes: int) -> torch.Tensor:
    return torch.arange(n) % classes


def tabular(n: int = 240, features: int = 6, classes: int = 3, seed: int = 0):
    """N×F rows: feature c is high for class c."""
    g = torch.Generator().manual_seed(seed)
    y = _labels(n, classes)
    x = torch.randn(n, features, generator=g)
    x[torch.arange(n), y] += 3.0
    return x, y


def signals(n: int = 240, channels: int = 1, length: int = 40, classes: int = 3, seed: int = 0):
    """N×C×L signals: class c is a bump in the c-th third of the signal."""
    g = torch.Generator().manual_seed(seed)
    y = _labels(n, classes)
    x = 0.5 * torch.randn(n, channels, length, generator=g)
    part = length // classes
    for c in range(classes):
        x[y == c, :, c * part:(c + 1) * part] += 2.0
    return x, y


def images(n: int = 240, channels: int = 1, size: int = 8, classes: int = 3, seed: int = 0):
    """N×C×H×W images in [0, 1]: class c lights the c-th horizontal band."""
    g = torch.Generator().manual_seed(seed)
    y = _labels(n, classes)
    x = 0.3 * torch.rand(n, channels, size, size, generator=g)
    band = size // classes
    for c in range(classes):
        x[y == c, :, c * band:(c + 1) * band, :] += 0.6
    return x, y


def tabular_parts(n_train: int = 60, n_test: int = 30, val: int = 0):
    """{train, test[, val]} parts as numpy arrays; feature 0 holds each sample's id (train ids
    0.., val ids 1000.., test ids 2000..), so a test can tell which samples went where."""
    def part(n, start, seed):
        x, y = tabular(n, seed=seed)
        x = x.numpy().astype(np.float32)
        x[:, 0] = np.arange(start, start + n)
        return x, y.numpy()

    out = {"train": part(n_train, 0, 1), "test": part(n_test, 2000, 2)}
    if val:
        out["val"] = part(val, 1000, 3)
    return out


class Parts:
    """Parts given as attributes (train, test) rather than a mapping."""

    def __init__(self) -> None:
        self.train = signals(48)
        self.test = signals(24, seed=5)


def parts_object():
    return Parts()


# ------------------------------------------- what users return that is right, in other types
def pandas_pair():
    """A feature table and its label column, as pandas reads them from a CSV."""
    import pandas as pd

    x, y = tabular(60)
    return pd.DataFrame(x.numpy(), columns=[f"f{i}" for i in range(6)]), pd.Series(y.numpy())


def list_of_pairs():
    x, y = tabular(60)
    return [(x[i].numpy(), int(y[i])) for i in range(60)]


def bool_labels():
    x, y = tabular(60, classes=2)
    return x, y.bool()


# ---------------------------------------------------------------- factories that get it wrong
def a_table():
    import pandas as pd

    x, y = tabular(30)
    frame = pd.DataFrame(x.numpy())
    frame["label"] = y.numpy()
    return frame


def string_labels():
    x, y = tabular(30)
    return x.numpy(), np.array(["cat", "dog", "eel"])[y.numpy()]


def one_class():
    x, _ = tabular(30)
    return x, torch.zeros(30, dtype=torch.long)


def train_of_one_class():
    x, y = tabular(60)
    return {"train": (x[:30], torch.zeros(30, dtype=torch.long)), "test": (x[30:], y[30:])}


def nan_rows():
    x, y = tabular(30)
    x[[4, 9], 2] = float("nan")
    return x, y


def beyond_float32():
    x, y = tabular(30)
    x = x.double()
    x[:, 1] *= 1e300
    return x, y


class Named(torch.utils.data.Dataset):
    """A Dataset whose `targets` are class names (as a CSV-backed one might keep them)."""

    def __init__(self) -> None:
        self.x, y = tabular(30)
        self.targets = [("cat", "dog", "eel")[i] for i in y.tolist()]

    def __len__(self) -> int:
        return 30

    def __getitem__(self, i: int):
        return self.x[i], self.targets[i]


def named_targets():
    return Named()


class Broken(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 30

    def __getitem__(self, i: int):
        raise OSError(f"/mnt/data/{i}.npy: stale file handle")


def broken_dataset():
    return Broken()


def wrong_keys():
    x, y = tabular(30)
    return {"X": x, "y": y}


def generator():
    x, y = tabular(30)
    yield from zip(x, y)


def float_labels():
    x, y = tabular(30)
    return x.numpy(), y.numpy().astype(np.float64)


def object_array():
    x, y = tabular(30)
    rows = np.empty(30, dtype=object)
    rows[:] = [list(r) for r in x.tolist()]
    return rows, y.numpy()


def a_class():
    return torch.utils.data.TensorDataset


def raises():
    raise FileNotFoundError("/data/signals.npz")


def short_labels():
    x, y = tabular(30)
    return x, y[:20]


def five_outputs(input_shape, num_classes):
    """A model factory ignoring num_classes: 5 logits whatever the data."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(input_shape)), 5))


def small_net(input_shape, num_classes, hidden: int = 16):
    """A model factory using the input shape it is given."""
    return torch.nn.Sequential(torch.nn.Flatten(),
                               torch.nn.Linear(int(np.prod(input_shape)), hidden),
                               torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))


def softmax_head(input_shape, num_classes):
    """A model factory ending in a softmax: probabilities, not the logits the loss expects."""
    return torch.nn.Sequential(torch.nn.Flatten(),
                               torch.nn.Linear(int(np.prod(input_shape)), num_classes),
                               torch.nn.Softmax(dim=1))


def counted_tabular(log: str):
    """tabular(), leaving a line in `log` at every call: how often the data were loaded."""
    with open(log, "a") as f:
        f.write("loaded\n")
    return tabular()
