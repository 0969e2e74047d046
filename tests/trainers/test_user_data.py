"""Bringing one's own data and model: every sample shape through `trainers.fit`, a factory's own
split, options the data cannot take refused, and each mistake a factory can make as one line
(`trainers.preflight.check_config`, what a search's driver runs before Ray starts)."""
from __future__ import annotations

import pytest
import torch

from trainers import fit
from trainers.datasets import load_data
from trainers.errors import TrainerError
from trainers.preflight import check_config

torch.set_num_threads(1)
MOD = "shaped_data"


def _config(data: dict, model: dict, **groups) -> dict:
    cfg = {"data": {"dataset": "factory", "batch_size": 32, **data}, "model": model,
           "train": {"epochs": 2, "threads": 1, "device": "cpu"},
           "optimizer": {"lr": 0.03}, **groups}
    return cfg


@pytest.mark.parametrize("factory,model,shape", [
    ("tabular", {"name": "mlp", "width": 16, "depth": 1}, (6,)),
    ("signals", {"name": "cnn1d", "width": 8, "depth": 2, "hidden": 0, "head": "flatten"},
     (1, 40)),
    ("images", {"name": "cnn", "width": 8, "depth": 1, "hidden": 0}, (1, 8, 8)),
    ("signals", {"name": "factory", "factory": f"{MOD}:small_net"}, (1, 40)),
], ids=["tabular-mlp", "signals-cnn1d", "images-cnn", "signals-factory"])
def test_each_sample_shape_trains_end_to_end(factory, model, shape):
    cfg = _config({"factory": f"{MOD}:{factory}"}, model)
    assert check_config(cfg)["input_shape"] == shape
    result = fit(cfg)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.test_accuracy > 0.6, result.history  # chance is 1/3
    assert result.split == "carved: validation 10%, test 20%"


def test_the_given_parts_are_the_ones_trained_and_tested_on():
    def ids(split, data):  # feature 0 is each sample's id, undone from the normalisation
        return sorted(round(v) for v in (split.x[:, 0] * data.std[0] + data.mean[0]).tolist())

    d = load_data({"dataset": "factory", "factory": f"{MOD}:tabular_parts",
                   "kwargs": {"val": 15}})
    assert ids(d.train, d) == list(range(60)) and ids(d.val, d) == list(range(1000, 1015))
    assert ids(d.test, d) == list(range(2000, 2030)) and d.split == "given: train/val/test"
    # without a val part, validation is carved from train (seeded, stratified); test untouched
    d = load_data({"dataset": "factory", "factory": f"{MOD}:tabular_parts", "val_fraction": 0.2,
                   "split_seed": 3})
    train, val = ids(d.train, d), ids(d.val, d)
    assert sorted(train + val) == list(range(60)) and len(val) == 12
    assert torch.bincount(d.val.y).tolist() == [4, 4, 4]
    assert ids(d.test, d) == list(range(2000, 2030))
    assert d.split == "given, validation carved 20% of train"
    again = load_data({"dataset": "factory", "factory": f"{MOD}:tabular_parts",
                       "val_fraction": 0.2, "split_seed": 3})
    assert ids(again.val, again) == val
    d = load_data({"dataset": "factory", "factory": f"{MOD}:parts_object", "test_fraction": 0})
    assert d.input_shape == (1, 40) and len(d.test) == 24
    result = fit(_config({"factory": f"{MOD}:tabular_parts"}, {"name": "mlp", "width": 8},
                         train={"epochs": 1, "threads": 1, "device": "cpu"}))
    assert result.split == "given, validation carved 10% of train"


@pytest.mark.parametrize("data,model,extra,message", [
    ({"factory": f"{MOD}:tabular"}, {"name": "cnn"}, {},
     r"^model\.name: cnn takes image \(N×C×H×W\) data, but the samples are tabular data of "
     r"shape \(6,\); use mlp"),
    ({"factory": f"{MOD}:images"}, {"name": "cnn1d"}, {},
     r"^model\.name: cnn1d takes sequence \(N×C×L\) data, but the samples are image data"),
    ({"factory": f"{MOD}:signals"}, {"name": "mlp"}, {"augment": {"hflip": 0.5}},
     r"^augment\.hflip: an image augmentation, but the data are sequences of shape \(1, 40\)"),
    ({"factory": f"{MOD}:tabular"}, {"name": "mlp"}, {"augment": {"shift": 2}},
     r"^augment\.shift: an image augmentation, but the data are rows of features"),
    ({"factory": f"{MOD}:images", "kwargs": {"channels": 1}}, {"name": "cnn"},
     {"augment": {"hue": 0.1}}, r"^augment\.hue: needs three-channel"),
    ({"factory": f"{MOD}:signals", "resize": 8}, {"name": "mlp"}, {},
     r"^data\.resize: resizes images, but the samples of factory are sequences"),
    ({"factory": f"{MOD}:tabular", "test_fraction": 0}, {"name": "mlp"}, {},
     r"^data\.test_fraction: 0 leaves no test split"),
    ({"factory": f"{MOD}:tabular_parts", "test_fraction": 0.2}, {"name": "mlp"}, {},
     r"^data\.test_fraction: factory comes with its own test split \(given\)"),
    ({"factory": f"{MOD}:tabular_parts", "kwargs": {"val": 9}, "val_fraction": 0.1},
     {"name": "mlp"}, {}, r"^data\.val_fraction: factory comes with its own validation part"),
    ({"factory": f"{MOD}:tabular"}, {"name": "factory", "factory": f"{MOD}:small_net",
                                     "dropout": 0.2}, {},
     r"^model\.dropout: unknown setting for name 'factory'"),
], ids=["cnn-on-rows", "cnn1d-on-images", "flip-on-signals", "shift-on-rows", "hue-on-gray",
        "resize-on-signals", "no-test-split", "test-fraction-with-parts",
        "val-fraction-with-val", "dropout-on-factory"])
def test_options_the_data_cannot_take_are_refused(data, model, extra, message):
    with pytest.raises(TrainerError, match=message):
        check_config(_config(data, model, **extra))


def test_colour_jitter_refused_on_standardised_images():
    def standardised(**kw):
        import shaped_data
        x, y = shaped_data.images(**kw)
        return (x - x.mean()) / x.std(), y

    import shaped_data
    shaped_data.standardised = standardised
    with pytest.raises(TrainerError, match=r"^augment\.brightness: works on pixel values in "
                                           r"\[0, 1\] \(and clamps to it\), but the data range"):
        check_config(_config({"factory": f"{MOD}:standardised"}, {"name": "cnn"},
                             augment={"brightness": 0.3}))


MISTAKES = [
    ("wrong_keys", r"returned parts \['X', 'y'\]; expected the parts train, test and "
                   r"optionally val"),
    ("generator", r"returned a generator/iterator \(it has no length"),
    ("float_labels", r"labels must be a 1-D integer tensor of 30 labels, got torch\.float64"),
    ("object_array", r"are not numeric tensors or arrays \(object arrays are not\)"),
    ("a_class", r"returned the class TensorDataset \(return an instance of it\)"),
    ("raises", r"calling shaped_data:raises\(\) failed: FileNotFoundError: /data/signals\.npz"),
    ("short_labels", r"30 samples but 20 labels; expected one label per sample"),
    ("a_table", r"returned a DataFrame \(a table\); return \(features, labels\)"),
    ("string_labels", r"the labels are strings \('cat', \.\.\.\); map them to class "
                      r"indices 0\.\.C-1"),
    ("named_targets", r"the labels are strings \('cat', \.\.\.\)"),
    ("one_class", r"every sample has label 0; classification needs at least two classes"),
    ("train_of_one_class", r"\(part 'train'\): every sample has label 0"),
    ("nan_rows", r"2 samples contain NaN or infinite values \(the first is sample 4\)"),
    ("beyond_float32", r"samples hold values beyond float32's range \(largest magnitude "
                       r"[0-9.]+e\+300\)"),
    ("broken_dataset", r"reading sample 0 of the Dataset failed: OSError: /mnt/data/0\.npy: "
                       r"stale file handle$"),
]


@pytest.mark.parametrize("factory,message", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_data_factory_mistake_is_one_line(factory, message):
    with pytest.raises(TrainerError, match=r"^data\.factory: " + r".*" + message) as err:
        check_config(_config({"factory": f"{MOD}:{factory}"}, {"name": "mlp"}))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("factory", ["pandas_pair", "list_of_pairs", "bool_labels"])
def test_a_factory_may_return_pandas_a_list_of_pairs_or_boolean_labels(factory):
    """What a user holds after reading a CSV or writing a loop: taken as it is, not refused."""
    import shaped_data

    expected = shaped_data.tabular(60, classes=2 if factory == "bool_labels" else 3)
    found = check_config(_config({"factory": f"{MOD}:{factory}"}, {"name": "mlp"}))
    assert found["input_shape"] == (6,) and found["num_classes"] == len(expected[1].unique())
    d = load_data({"dataset": "factory", "factory": f"{MOD}:{factory}"})
    labels = torch.cat([d.train.y, d.val.y, d.test.y])
    assert sorted(labels.tolist()) == sorted(expected[1].tolist())


def test_a_model_with_the_wrong_number_of_classes_is_one_line():
    with pytest.raises(TrainerError, match=r"^model\.factory: the model of shaped_data:"
                                           r"five_outputs maps a \(2, 6\) batch to \(2, 5\); "
                                           r"expected \(2, 3\) logits$"):
        check_config(_config({"factory": f"{MOD}:tabular"},
                             {"name": "factory", "factory": f"{MOD}:five_outputs"}))


def test_a_last_batch_of_one_sample_is_dropped_so_batchnorm_trains():
    """33 training rows in batches of 16 leave one over: BatchNorm cannot train on a batch of
    one, so every trial whose (searched) batch size did that failed; the lone sample is dropped."""
    from trainers.batches import lone_last
    from trainers.loop import train_batches

    cfg = _config({"factory": f"{MOD}:tabular_parts", "batch_size": 16,
                   "kwargs": {"n_train": 33, "val": 15}},
                  {"name": "mlp", "width": 16, "depth": 2, "batch_norm": True},
                  scheduler={"name": "onecycle"})
    result = fit(cfg)
    assert [h["epoch"] for h in result.history] == [1, 2]
    d = load_data(cfg["data"])
    assert len(d.train) == 33 and lone_last(d.train, 16) and train_batches(d.train, 16) == 2
    assert lone_last(d.train, 32) and train_batches(d.train, 32) == 1  # 32 + 1
    assert train_batches(d.train, 11) == 3 and not lone_last(d.train, 11)


def test_a_model_returning_probabilities_is_one_line():
    with pytest.raises(TrainerError, match=r"^model\.factory shaped_data:softmax_head returns "
                                           r"probabilities \(each row sums to 1\); return "
                                           r"logits \(drop the final softmax\)"):
        check_config(_config({"factory": f"{MOD}:tabular"},
                             {"name": "factory", "factory": f"{MOD}:softmax_head"}))
