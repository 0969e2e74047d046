"""CIFAR-10 / CIFAR-100: a reader of the published python-pickle batch files.

The files are read by `read_cifar_batch`, a reader of the real format (used alike for downloaded
files and the files tests write), not by torchvision's class, whose md5 check of each batch file
passes only for the published files. Integrity is checked where it means something: the
downloaded archive by torchvision's md5 (`download_and_extract_archive`), each batch file by its
structure (keys, dtype, shape, label range); unpickling admits numpy arrays and nothing else, so
a file in the data folder cannot run code.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import TrainerError
from .sources import Source, check_files, from_tensors, missing_files, official_test


@dataclass(frozen=True)
class CifarLayout:
    folder: str
    files: tuple[str, ...]
    label_key: str
    meta_file: str
    meta_key: str
    num_classes: int
    tv_class: str  # the torchvision class whose url / md5 the download uses


CIFAR = {
    "cifar10": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6))
                           + ("test_batch",), "labels", "batches.meta", "label_names", 10,
                           "CIFAR10"),
    "cifar100": CifarLayout("cifar-100-python", ("train", "test"), "fine_labels", "meta",
                            "fine_label_names", 100, "CIFAR100"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays only (CIFAR files are pickles)."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core."):  # files written by numpy 1.x (the real ones)
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def _unpickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as err:
        raise TrainerError(f"data.root: {path} is not a readable CIFAR file: "
                           f"{type(err).__name__}: {err}") from err


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, list]:
    """(N×3072 uint8 rows, N labels) of one CIFAR python batch file, checked for structure."""
    entry = _unpickle(path)
    data = entry.get("data") if isinstance(entry, dict) else None
    labels = entry.get(label_key) if isinstance(entry, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32 or labels is None or len(labels) != len(data):
        raise TrainerError(f"data.root: {path} is not a CIFAR batch (expected a dict with 'data': "
                           f"N×3072 uint8 and {label_key!r}: N labels)")
    labels = [int(v) for v in labels]
    if labels and not 0 <= min(labels) <= max(labels) < num_classes:
        raise TrainerError(f"data.root: {path} has labels outside 0..{num_classes - 1}")
    return data, labels


def check_cifar(cfg: dict, name: str) -> None:
    """The batch files are under <root>/<folder>/ (or will be downloaded); none is opened."""
    layout = CIFAR[name]
    check_files(Path(os.path.expanduser(cfg["root"])) / layout.folder, list(layout.files),
                name, cfg)


def load_cifar(cfg: dict, name: str) -> Source:
    """CIFAR-10 / CIFAR-100 python batches under <root>/<folder>/; the test batch is the test
    split (`Source.given`)."""
    layout = CIFAR[name]
    root = Path(os.path.expanduser(cfg["root"]))
    folder = root / layout.folder
    if not all((folder / f).is_file() for f in layout.files):
        if not cfg["download"]:
            raise missing_files(folder, list(layout.files), name)
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive
        tv = getattr(tvd, layout.tv_class)
        try:
            download_and_extract_archive(tv.url, str(root), filename=tv.filename, md5=tv.tgz_md5)
        except Exception as err:
            raise TrainerError(f"data.download: fetching {name} into {root} failed: "
                               f"{type(err).__name__}: {err}") from err
    rows, labels, n_train = [], [], 0
    for f in layout.files:
        data, lab = read_cifar_batch(folder / f, layout.label_key, layout.num_classes)
        rows.append(data)
        labels.extend(lab)
        n_train += 0 if f.startswith("test") else len(lab)
    images = torch.from_numpy(np.concatenate(rows)).view(-1, 3, 32, 32)
    classes = None
    meta = folder / layout.meta_file
    if meta.is_file():
        entry = _unpickle(meta)
        if isinstance(entry, dict) and isinstance(entry.get(layout.meta_key), list):
            classes = [str(c) for c in entry[layout.meta_key]]
    src = from_tensors(images, torch.tensor(labels), f"data.root {folder}", classes=classes)
    src.num_classes = layout.num_classes
    return official_test(src, n_train)
