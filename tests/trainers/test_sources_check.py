"""`check_data`: are a dataset's files there? Names in folders only, nothing read."""
from __future__ import annotations

import pytest

from trainers.datasets import DATASETS, check_data, load_data
from trainers.errors import TrainerError
from trainers.sources import check_nothing

FILE_DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "cifar10",
                 "cifar100": "cifar100"}


def test_every_dataset_with_files_has_a_check():
    checked = {name for name, info in DATASETS.items() if info.check is not check_nothing}
    assert checked == set(FILE_DATASETS) | {"image_folder"}


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_bundled_data_always_passes(name):
    check_data({"dataset": name})


def test_a_factory_has_no_files_to_check():
    check_data({"dataset": "factory", "factory": "nowhere.to_be:found"})


@pytest.mark.parametrize("name", sorted(FILE_DATASETS))
def test_files_written_by_the_real_format_pass(name, idx_files, cifar_files):
    if name.startswith("cifar"):
        root, _, _ = cifar_files(name)
    else:
        root, _, _ = idx_files(FILE_DATASETS[name])
    check_data({"dataset": name, "root": str(root)})


@pytest.mark.parametrize("name,folder,files", [
    ("mnist", "MNIST/raw", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    ("fashion_mnist", "FashionMNIST/raw", ["train-labels-idx1-ubyte"]),
    ("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]),
    ("cifar100", "cifar-100-python", ["train", "test"])])
def test_an_empty_root_names_the_folder_and_the_files_expected(tmp_path, name, folder, files):
    with pytest.raises(TrainerError) as err:
        check_data({"dataset": name, "root": str(tmp_path)})
    msg = str(err.value)
    assert msg.startswith("data.root: ") and "\n" not in msg
    assert str(tmp_path / folder) in msg and all(f in msg for f in files)
    # the loader says the same: one message for one mistake
    with pytest.raises(TrainerError) as loaded:
        load_data({"dataset": name, "root": str(tmp_path)})
    assert str(loaded.value) == msg


def test_one_missing_batch_is_named(cifar_files):
    root, _, _ = cifar_files("cifar10")
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(TrainerError, match=r"\(missing data_batch_3\)"):
        check_data({"dataset": "cifar10", "root": str(root)})


def test_no_file_is_opened(tmp_path):
    """Empty files pass the check: it looks at names; the loader is the one that reads."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / f).write_bytes(b"")
    check_data({"dataset": "cifar10", "root": str(tmp_path)})
    with pytest.raises(TrainerError, match="not a readable CIFAR file"):
        load_data({"dataset": "cifar10", "root": str(tmp_path)})


def test_download_leaves_missing_files_to_the_loader(tmp_path):
    check_data({"dataset": "cifar10", "root": str(tmp_path), "download": True})


def test_image_folder(png_folder, tmp_path):
    check_data({"dataset": "image_folder", "root": str(png_folder())})
    with pytest.raises(TrainerError, match=r"data\.root: image folder .*nope does not exist"):
        check_data({"dataset": "image_folder", "root": str(tmp_path / "nope")})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrainerError, match="has no sub-folders; expected one sub-folder"):
        check_data({"dataset": "image_folder", "root": str(empty)})
    (empty / "cats").mkdir()
    (empty / "cats" / "notes.txt").write_text("no image")
    with pytest.raises(TrainerError, match=r"class folder .*cats holds no image"):
        check_data({"dataset": "image_folder", "root": str(empty)})


def test_settings_mistakes_are_the_resolvers():
    with pytest.raises(TrainerError, match="data.dataset: unknown dataset 'cifar11'"):
        check_data({"dataset": "cifar11"})
