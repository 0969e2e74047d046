"""8-bit images held compact (uint8 on the training device, normalised per batch there): the
same batches, bit for bit, and the same training as the float32 form; what stays float."""
from __future__ import annotations

import pytest
import torch

from trainers import fit
from trainers.batches import DatasetSplit, TensorSplit, iterate_batches
from trainers.datasets import kfold_splits, load_data

MNIST = {"dataset": "mnist5k"}


def _batches(split, seed=7, size=97):
    g = torch.Generator().manual_seed(seed)
    return list(iterate_batches(split, size, shuffle=True, generator=g))


def test_mnist_is_held_as_uint8_and_gives_the_float_batches_bit_for_bit():
    compact, wide = load_data(MNIST), load_data(MNIST, compact=False)
    assert compact.mean == wide.mean and compact.std == wide.std
    assert compact.value_range == wide.value_range
    for name in ("train", "val", "test"):
        a, b = getattr(compact, name), getattr(wide, name)
        assert isinstance(a, TensorSplit) and a.compact and a.stored.dtype == torch.uint8
        assert not b.compact and b.stored.dtype == torch.float32
        assert a.nbytes * 4 == b.nbytes  # a quarter of the memory
        assert torch.equal(a.indices, b.indices) and torch.equal(a.y, b.y)
        assert torch.equal(a.x, b.x)
        for (xa, ya), (xb, yb) in zip(_batches(a), _batches(b), strict=True):
            assert xa.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb)
    plain = list(iterate_batches(compact.test, 64, shuffle=False))
    assert torch.equal(torch.cat([x for x, _ in plain]), wide.test.x)


def test_training_on_compact_digits_equals_training_on_floats():
    cfg = {"data": {"dataset": "digits", "batch_size": 64},
           "model": {"name": "mlp", "width": 16},
           "augment": {"shift": 1, "hflip": 0.5, "cutout": 0.5, "mixup": 0.2},
           "train": {"epochs": 2, "device": "cpu", "seed": 3}}
    compact, wide = load_data(cfg["data"]), load_data(cfg["data"], compact=False)
    assert compact.train.compact and not wide.train.compact
    a, b = fit(cfg, data=compact, cpus=1), fit(cfg, data=wide, cpus=1)
    drop = ("epoch_time", "samples_per_sec")
    assert [{k: v for k, v in h.items() if k not in drop} for h in a.history] == \
        [{k: v for k, v in h.items() if k not in drop} for h in b.history]
    assert a.test_accuracy == b.test_accuracy and a.best_epoch == b.best_epoch


def test_in_memory_mb_counts_uint8_images_at_a_byte_a_value():
    # mnist5k: 5,000 × 784 values, 3.7 MiB as uint8, 15 MiB as float32
    fits = load_data({**MNIST, "in_memory_mb": 8})
    assert fits.in_memory and fits.train.compact
    wide = load_data({**MNIST, "in_memory_mb": 8}, compact=False)
    assert not wide.in_memory and isinstance(wide.train, DatasetSplit)
    for (xa, _), (xb, _) in zip(_batches(fits.val), _batches(wide.val), strict=True):
        assert torch.allclose(xa, xb, atol=1e-6)  # the DataLoader path: per sample on the CPU
    assert not load_data({**MNIST, "in_memory_mb": 3}).in_memory


FACTORY = """
import torch

def images(kind):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    x = torch.rand(200, 1, 6, 6, generator=g)
    if kind == "pixels":  # N×H×W uint8: gray images
        return (x * 255).to(torch.uint8).squeeze(1), y
    return (x if kind == "floats" else torch.randn(200, 5, generator=g)), y
"""


def test_what_stays_float32(user_module):
    resized = load_data({**MNIST, "resize": 14})  # resized pixels are no longer 8-bit values
    assert resized.in_memory and not resized.train.compact
    assert resized.train.stored.dtype == torch.float32
    native = load_data({**MNIST, "resize": 28})  # its own size: nothing resized
    assert native.train.compact
    module = user_module(FACTORY)
    for kind in ("floats", "rows"):  # float images (e.g. already scaled), a table
        data = load_data({"dataset": "factory", "factory": f"{module}:images",
                          "kwargs": {"kind": kind}})
        assert data.in_memory and not data.train.compact
        assert data.train.stored.dtype == torch.float32
    data = load_data({"dataset": "factory", "factory": f"{module}:images",
                      "kwargs": {"kind": "pixels"}})
    assert data.train.compact and data.input_shape == (1, 6, 6)


def test_k_folds_of_compact_images_equal_the_float_folds():
    cfg = {"dataset": "digits", "kfold": 3}
    compact, wide = kfold_splits(cfg), kfold_splits(cfg, compact=False)
    for a, b in zip(compact, wide, strict=True):
        assert a.train.compact and a.mean == b.mean and a.std == b.std
        assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.x, b.val.x)


def test_a_compact_split_holds_uint8_images_only():
    from trainers.batches import Pixels

    px = Pixels(255.0, torch.zeros(1), torch.ones(1), torch.device("cpu"))
    with pytest.raises(ValueError, match="a compact split holds N×C×H×W uint8 images"):
        TensorSplit(torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long), pixels=px)
