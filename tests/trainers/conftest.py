"""Fixtures for the trainer tests: one torch thread, and tiny data files in the real on-disk
formats (MNIST idx-ubyte, CIFAR python pickles, PNG folders, a user factory module), written by
the tests and read back through the same code that reads the published files."""
from __future__ import annotations

import pickle
import struct
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def _idx(path: Path, array: np.ndarray) -> None:
    """An idx-ubyte file: magic 0x0000 08 <ndim>, big-endian uint32 dims, then the bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                      *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_files(tmp_path):
    """write(cls_name, n_train, n_test) -> (root, images N×28×28 uint8, labels): the four idx
    files under <root>/<cls_name>/raw/, train samples first in the returned arrays."""

    def write(cls_name: str, n_train: int = 40, n_test: int = 20, seed: int = 0):
        rng = np.random.default_rng(seed)
        raw = tmp_path / "data" / cls_name / "raw"
        raw.mkdir(parents=True)
        images = rng.integers(0, 256, (n_train + n_test, 28, 28), dtype=np.uint8)
        labels = (np.arange(n_train + n_test) % 10).astype(np.uint8)
        for part, sl in (("train", slice(0, n_train)), ("t10k", slice(n_train, None))):
            _idx(raw / f"{part}-images-idx3-ubyte", images[sl])
            _idx(raw / f"{part}-labels-idx1-ubyte", labels[sl])
        return tmp_path / "data", images, labels

    return write


CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
                "labels", "batches.meta", "label_names", 10),
    "cifar100": ("cifar-100-python", ["train", "test"], "fine_labels", "meta",
                 "fine_label_names", 100),
}


def cifar_pickle(entry: dict, numpy1_names: bool = False) -> bytes:
    """Protocol 2, as the published files; `numpy1_names` spells the array globals the way
    numpy 1.x (which wrote the published files) does."""
    data = pickle.dumps(entry, protocol=2)
    return data.replace(b"numpy._core.", b"numpy.core.") if numpy1_names else data


@pytest.fixture
def cifar_files(tmp_path):
    """write(name, per_class_per_file) -> (root, images N×3×32×32 uint8, labels) with the
    batch files and meta file of CIFAR-10 / CIFAR-100 in the python pickle format."""

    def write(name: str, per_class: int = 1, seed: int = 0, numpy1_names: bool = False):
        folder_name, files, label_key, meta, meta_key, classes = CIFAR_FILES[name]
        rng = np.random.default_rng(seed)
        folder = tmp_path / "data" / folder_name
        folder.mkdir(parents=True)
        all_rows, all_labels = [], []
        for f in files:
            labels = [c for c in range(classes) for _ in range(per_class)]
            rows = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
            entry = {"batch_label": f"{f} of 1", label_key: labels, "data": rows,
                     "filenames": [f"img_{i}.png" for i in range(len(labels))]}
            if name == "cifar100":
                entry["coarse_labels"] = [c // 5 for c in labels]
            (folder / f).write_bytes(cifar_pickle(entry, numpy1_names))
            all_rows.append(rows)
            all_labels += labels
        (folder / meta).write_bytes(cifar_pickle(
            {meta_key: [f"class_{c}" for c in range(classes)], "num_cases_per_batch": 10}))
        images = np.concatenate(all_rows).reshape(-1, 3, 32, 32)
        return tmp_path / "data", images, np.array(all_labels)

    return write


COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


@pytest.fixture
def png_folder(tmp_path):
    """write(per_class) -> root with <root>/<colour>/<i>.png: 12×10 px images of one colour
    per class (plus a little noise), so a sample's class can be read off its pixels."""
    from PIL import Image

    def write(per_class: int = 6) -> Path:
        rng = np.random.default_rng(0)
        root = tmp_path / "images"
        for name, rgb in COLOURS.items():
            (root / name).mkdir(parents=True)
            for i in range(per_class):
                px = np.clip(np.array(rgb) * 0.8 + rng.integers(0, 40, (10, 12, 3)), 0, 255)
                Image.fromarray(px.astype(np.uint8)).save(root / name / f"{i}.png")
        return root

    return write


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """write(source) -> name of a fresh importable module holding `source`."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"user_{uuid.uuid4().hex[:10]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write
