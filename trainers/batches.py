"""The two forms of a split and the one way to read it in mini-batches.

* `TensorSplit`: samples and int64 labels already on the training device. Batches are slices
  (or a gather by a random permutation) on that device: no DataLoader, no workers, no
  per-sample Python work. Used whenever the data fits `data.in_memory_mb`. The samples are
  normalised float32, or, for 8-bit images (`Pixels`), the raw uint8 values at a quarter of the
  memory, each batch normalised on the device as it is cut (the same float32 operations in the
  same order as the float form applies once to the whole split, so both give the same bits).
* `DatasetSplit`: indices into a Dataset of raw images; a DataLoader with `num_workers` workers
  resizes and normalises each sample (`Prepare`), pinned memory when the target is CUDA.

`iterate_batches` gives both the same contract: the same generator gives the same permutation,
hence the same batches whatever the form, so the two paths are interchangeable.
"""
from __future__ import annotations

import math
from typing import Iterator, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


def resize_images(x: Tensor, size: tuple[int, int] | None) -> Tensor:
    """Bilinear (antialiased) resize of an N×C×H×W float batch; the same function serves the
    in-memory path (whole chunks) and the DataLoader path (one sample), so both agree."""
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


class Prepare:
    """Per-sample transform of the DataLoader path: resize (images; `size` None: any sample as
    it is), then (x - mean) / std per channel (rows: per feature). Without mean/std it only
    resizes (used while the statistics are being computed)."""

    def __init__(self, size: tuple[int, int] | None, mean: Tensor | None = None,
                 std: Tensor | None = None) -> None:
        self.size = size
        self.mean = None if mean is None else mean.float()
        self.std = None if std is None else std.float()

    def __call__(self, x: Tensor) -> Tensor:
        x = resize_images(x.float().unsqueeze(0), self.size).squeeze(0)
        if self.mean is not None:
            view = (-1, *([1] * (x.dim() - 1)))
            x = (x - self.mean.view(view)) / self.std.view(view)
        return x


class _Transformed(Dataset):
    """A source Dataset of (raw image, label) with `Prepare` applied; indexed by source index."""

    def __init__(self, source: Dataset, transform: Prepare) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x, y = self.source[i]
        return self.transform(x), int(y)


class Pixels:
    """How the uint8 samples of a compact split become the model's inputs, batch by batch on
    the split's device: `x.float() / scale`, then `(x - mean) / std` per channel. These are the
    operations, in the order, that `datasets.load_data` applies to a float split (divide when
    it materialises the images, then subtract and divide in place), so a compact batch equals
    the float batch bit for bit."""

    def __init__(self, scale: float, mean: Tensor, std: Tensor, device: torch.device) -> None:
        self.scale = float(scale)
        view = (1, -1, 1, 1)
        self.mean = mean.to(device=device, dtype=torch.float32).view(view)
        self.std = std.to(device=device, dtype=torch.float32).view(view)

    def __call__(self, xb: Tensor) -> Tensor:
        return (xb.float() / self.scale).sub_(self.mean).div_(self.std)


class TensorSplit:
    """A split held in memory on one device: samples and `y` (N, int64); `indices` (optional)
    are the samples' positions in the dataset. The samples are `stored` as given: normalised
    float32 (N×C×H×W images, N×C×L sequences, N×F rows), or with `pixels` raw N×C×H×W uint8
    images that `pixels` normalises per batch (`iterate_batches` does)."""

    def __init__(self, x: Tensor, y: Tensor, indices: Tensor | None = None,
                 pixels: Pixels | None = None) -> None:
        if pixels is not None and (x.dtype != torch.uint8 or x.dim() != 4):
            raise ValueError(f"a compact split holds N×C×H×W uint8 images, got {x.dtype} of "
                             f"shape {tuple(x.shape)}")
        self.stored, self.y, self.indices, self.pixels = x, y, indices, pixels

    @property
    def x(self) -> Tensor:
        """All samples, normalised float32 (a compact split decodes a new tensor on each
        access: for looking at a few samples, not for training loops)."""
        return self.stored if self.pixels is None else self.pixels(self.stored)

    @property
    def compact(self) -> bool:
        return self.pixels is not None

    @property
    def nbytes(self) -> int:
        """The memory the samples take on their device."""
        return self.stored.numel() * self.stored.element_size()

    def __len__(self) -> int:
        return len(self.y)

    @property
    def targets(self) -> Tensor:
        return self.y

    @property
    def device(self) -> torch.device:
        return self.stored.device


class DatasetSplit:
    """A split read through a DataLoader: `indices` into `source` (yielding raw C×H×W float images
    in [0, 1] and int labels), `targets` their labels, `transform` resizing and normalising."""

    def __init__(self, source: Dataset, indices: Tensor, targets: Tensor, transform: Prepare,
                 num_workers: int = 0) -> None:
        self.source, self.indices, self.targets = source, indices, targets
        self.transform, self.num_workers = transform, num_workers

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


Split = Union[TensorSplit, DatasetSplit]


def lone_last(split: Split, batch_size: int) -> bool:
    """Whether the split's last training batch would hold one sample: training drops it.
    BatchNorm cannot normalise a batch of one in training mode (every trial whose searched
    batch size left one sample over would fail), and one sample's step is mostly noise."""
    n = len(split)
    return n > batch_size and n % batch_size == 1


def num_batches(split: Split, batch_size: int, *, drop_last: bool = False) -> int:
    """How many batches `iterate_batches` yields for this split and batch size."""
    n = len(split)
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def to_device(x: Tensor, target: torch.device) -> Tensor:
    """`x` on `target`. Only a copy to a GPU may be asynchronous: the stream orders it before
    the kernels that read it. A copy from a GPU to the host must block, or the host could read
    the buffer before the copy has filled it."""
    return x.to(target, non_blocking=target.type == "cuda" and x.device.type == "cpu")


def _order(n: int, shuffle: bool, generator: torch.Generator | None) -> Tensor | None:
    if not shuffle:
        return None
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.randperm(n, generator=generator, device=where)


def iterate_batches(split: Split, batch_size: int, *, shuffle: bool,
                    generator: torch.Generator | None = None,
                    device: torch.device | str | None = None,
                    drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (x float32 normalised, y int64) batches on `device` (None: where the split lives).
    A compact split's batch is normalised where the split lives, then moved.

    With `shuffle` the order is `torch.randperm(len(split), generator=generator)`: the same
    generator state gives the same batches for both split forms. `drop_last` drops a final
    partial batch (useful when a batch of one would break BatchNorm in training mode).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    order = _order(n, shuffle, generator)
    stop = n - n % batch_size if drop_last else n
    target = torch.device(device) if device is not None else split.device
    if isinstance(split, TensorSplit):
        yield from _tensor_batches(split, batch_size, order, stop, target)
    else:
        yield from _loader_batches(split, batch_size, order, stop, target)


def _tensor_batches(split: TensorSplit, batch_size: int, order: Tensor | None, stop: int,
                    target: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    x, y, decode = split.stored, split.y, split.pixels
    if order is not None:
        order = order.to(x.device)
    moving = target != x.device
    for start in range(0, stop, batch_size):
        if order is None:
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        if decode is not None:  # on the split's device, as the float form was normalised
            xb = decode(xb)
        if moving:
            xb, yb = to_device(xb, target), to_device(yb, target)
        yield xb, yb


def _loader_batches(split: DatasetSplit, batch_size: int, order: Tensor | None, stop: int,
                    target: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    idx = split.indices if order is None else split.indices[order.cpu()]
    batches = [idx[s:s + batch_size].tolist() for s in range(0, stop, batch_size)]
    cuda = target.type == "cuda"
    loader = DataLoader(_Transformed(split.source, split.transform), batch_sampler=batches,
                        num_workers=split.num_workers, pin_memory=cuda)
    for xb, yb in loader:
        yb = yb.long()
        if target.type != "cpu":
            xb, yb = to_device(xb, target), to_device(yb, target)
        yield xb, yb
