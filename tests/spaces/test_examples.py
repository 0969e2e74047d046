"""The shipped examples' own code (spaces/examples/): the data functions' shapes, splits and
determinism, the model factories on every input layout, and the searched names being the
factories' own arguments."""
from __future__ import annotations

import inspect

import pytest
import torch
import yaml

from spaces.examples import signals, wine
from spaces.space import SHIPPED_DIR

torch.set_num_threads(1)

EXAMPLES = [("wine_mlp", wine), ("signals_cnn1d", signals)]
SMALL = {"train": 24, "val": 6, "test": 10}  # signals per class, to keep the tests quick


def parts_of(module, **kw):
    return module.load(**kw) if module is wine else module.load(per_class=SMALL, **kw)


@pytest.mark.parametrize("name, module", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_the_data_function_returns_a_fixed_split_and_the_same_samples_pooled(name, module):
    split = parts_of(module)
    assert list(split) == ["train", "val", "test"]
    for x, y in split.values():
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and len(x) == len(y)
        assert torch.isfinite(x).all()
    classes = [torch.bincount(y).tolist() for _, y in split.values()]
    assert all(len(c) == module.N_CLASSES and min(c) > 0 for c in classes)  # stratified
    again = parts_of(module)
    assert all(torch.equal(split[k][0], again[k][0]) and torch.equal(split[k][1], again[k][1])
               for k in split)  # deterministic
    x, y = parts_of(module, parts=False)
    assert torch.equal(x, torch.cat([split[k][0] for k in split]))
    assert torch.equal(y, torch.cat([split[k][1] for k in split]))
    other = parts_of(module, seed=1)
    assert not torch.equal(other["test"][0], split["test"][0])


def test_wine_is_the_whole_set_split_60_20_20_and_standardised_on_the_training_part():
    split = wine.load()
    assert {k: tuple(v[0].shape) for k, v in split.items()} == {
        "train": (106, 13), "val": (36, 13), "test": (36, 13)}
    xs = torch.cat([v[0] for v in split.values()])
    assert len(torch.unique(xs, dim=0)) == 178  # no sample twice, none missing
    train = split["train"][0].double()
    assert train.mean(0).abs().max() < 1e-5 and (train.std(0, unbiased=False) - 1).abs().max() < 1e-4


def test_signals_are_n_by_1_by_l_with_the_documented_split_and_options():
    split = signals.load()
    assert {k: tuple(v[0].shape) for k, v in split.items()} == {
        "train": (3200, 1, 128), "val": (800, 1, 128), "test": (1000, 1, 128)}
    short = signals.load(length=64, per_class=SMALL)
    assert tuple(short["val"][0].shape) == (60, 1, 64)
    quiet = signals.load(noise=0.0, per_class=SMALL)
    assert quiet["train"][0].abs().max() <= 1.4 + 1e-5  # the amplitude bound, without noise
    # a part does not depend on the size of another: the test part is the same samples
    bigger = signals.load(per_class={**SMALL, "train": 30})
    assert torch.equal(bigger["test"][0], signals.load(per_class=SMALL)["test"][0])


@pytest.mark.parametrize("name, module", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_the_searched_kwargs_are_the_factorys_own_arguments(name, module):
    text = yaml.safe_load((SHIPPED_DIR / f"{name}.yaml").read_text())
    searched = text["space"]["model"]["kwargs"]
    factory = text["model"]["factory"]
    assert factory == f"spaces.examples.{module.__name__.rsplit('.', 1)[1]}:make_model"
    assert text["data"]["factory"].endswith(":load")
    params = inspect.signature(module.make_model).parameters
    assert set(searched) <= set(params)
    for arg, spec in searched.items():  # every choice, and both ends of every range, build
        values = spec.get("choices") or [spec["low"], spec["high"]]
        for value in values:
            model = module.make_model(num_classes=module.N_CLASSES, **{arg: value})
            x = parts_of(module)["val"][0][:5]
            assert model.eval()(x).shape == (5, module.N_CLASSES)


def test_the_factories_take_every_input_layout_a_trainer_may_hand_them():
    x = wine.load()["val"][0][:4]
    for model in (wine.make_model(input_shape=(13,)), wine.make_model(input_shape=(1, 13)),
                  wine.make_model(in_channels=1)):
        for batch in (x, x.unsqueeze(1), x.view(4, 1, 1, 13)):
            assert model.eval()(batch).shape == (4, 3)
    s = signals.load(per_class=SMALL, length=100)["val"][0][:4]
    for model in (signals.make_model(input_shape=(1, 100)), signals.make_model(in_channels=1)):
        for batch in (s, s.unsqueeze(2)):
            assert model.eval()(batch).shape == (4, 10)
    with pytest.raises(ValueError, match="activation must be one of"):
        wine.make_model(activation="swish")


def test_the_pooled_signals_train_through_todays_factory_contract():
    from trainers import fit

    config = {"data": {"dataset": "factory", "factory": "spaces.examples.signals:load",
                       "kwargs": {"parts": False, "per_class": SMALL, "length": 32},
                       "batch_size": 32},
              "model": {"name": "factory", "factory": "spaces.examples.signals:make_model",
                        "kwargs": {"channels": 4, "depth": 1}},
              "augment": {"shift": 0}, "train": {"epochs": 1}}
    result = fit(config, cpus=1)
    assert len(result.history) == 1 and 0.0 <= result.test_accuracy <= 1.0
