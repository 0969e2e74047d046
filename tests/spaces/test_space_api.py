"""The Space API the other packages use: names, conditions, sampling, resolution, overrides."""
from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from space_helpers import error_of, load

from spaces import Condition, SpaceError, load_space, shipped
from trainers.catalog import defaults

BRANCHY = """
    space:
      optimizer:
        lr: {low: 1.0e-4, high: 1.0e-1, log: true}
        name:
          choices:
            adamw: {}
            sgd:
              momentum: {low: 0.5, high: 0.9}
              nesterov: true
            adam:
              betas: {choices: [[0.9, 0.999], [0.8, 0.99]]}
              amsgrad:
                choices:
                  true: {eps: {low: 1.0e-9, high: 1.0e-6, log: true}}
                  false: {}
      augment:
        mixup: {low: 0.1, high: 0.4, when: {optimizer.name: [sgd, adam]}}
    augment:
      mixup: 0.05
"""


def _trial_with(space, seed_params):
    """A config from an Optuna trial whose values are fixed in advance (enqueued)."""
    study = optuna.create_study()
    study.enqueue_trial(seed_params)
    trial = study.ask()
    return trial, space.define_by_run(trial)


def test_names_kinds_and_conditions():
    space = load(BRANCHY)
    by_name = {p.name: p for p in space.params}
    assert list(by_name) == [
        "optimizer.name", "optimizer.name.sgd.momentum", "optimizer.name.adam.betas",
        "optimizer.name.adam.amsgrad", "optimizer.name.adam.amsgrad.true.eps",
        "optimizer.lr", "augment.mixup"]
    eps = by_name["optimizer.name.adam.amsgrad.true.eps"]
    assert eps.path == "optimizer.eps" and eps.kind == "float"
    assert eps.distribution == FloatDistribution(1e-9, 1e-6, log=True)
    assert eps.parent == Condition("optimizer.name.adam.amsgrad", (True,))
    assert eps.condition == (Condition("optimizer.name", ("adam",)),
                             Condition("optimizer.name.adam.amsgrad", (True,)))
    assert by_name["augment.mixup"].when == (Condition("optimizer.name", ("sgd", "adam")),)
    assert by_name["optimizer.lr"].condition == ()
    assert isinstance(by_name["optimizer.name"].distribution, CategoricalDistribution)
    assert [c.path for c in space.constants] == ["optimizer.nesterov"]
    assert space.has_conditionals and space.distributions() is None


def test_branches_set_their_parameters_and_only_those():
    space = load(BRANCHY)
    trial, config = _trial_with(space, {"optimizer.name": "adamw", "optimizer.lr": 0.01})
    assert set(trial.params) == {"optimizer.name", "optimizer.lr"}
    assert config["optimizer"] == {**defaults({"optimizer": "adamw"})["optimizer"], "lr": 0.01}
    assert config["augment"]["mixup"] == 0.05  # inactive: the fixed value

    trial, config = _trial_with(space, {"optimizer.name": "sgd", "optimizer.lr": 0.01,
                                        "optimizer.name.sgd.momentum": 0.7,
                                        "augment.mixup": 0.2})
    assert set(trial.params) == {"optimizer.name", "optimizer.name.sgd.momentum",
                                 "optimizer.lr", "augment.mixup"}
    assert config["optimizer"]["momentum"] == 0.7 and config["optimizer"]["nesterov"] is True
    assert "betas" not in config["optimizer"] and config["augment"]["mixup"] == 0.2


def test_list_choices_are_encoded_for_optuna_and_decoded_in_configs():
    space = load(BRANCHY)
    betas = next(p for p in space.params if p.name.endswith("betas"))
    assert betas.distribution.choices == ("[0.9,0.999]", "[0.8,0.99]")
    trial, config = _trial_with(space, {"optimizer.name": "adam", "optimizer.lr": 0.01,
                                        "optimizer.name.adam.betas": "[0.8,0.99]",
                                        "optimizer.name.adam.amsgrad": True,
                                        "optimizer.name.adam.amsgrad.true.eps": 1e-7,
                                        "augment.mixup": 0.3})
    assert config["optimizer"]["betas"] == [0.8, 0.99]
    assert config["optimizer"]["eps"] == 1e-7 and config["optimizer"]["amsgrad"] is True
    assert space.config_from_params(trial.params) == config
    decoded = {**trial.params, "optimizer.name.adam.betas": [0.8, 0.99]}
    assert space.config_from_params(decoded) == config


def test_unconditional_space_has_static_distributions():
    space = load("""
        space:
          optimizer:
            lr: {low: 1.0e-4, high: 1.0e-1, log: true}
            betas: {choices: [[0.9, 0.999], [0.8, 0.99]]}
          model:
            width: {low: 8, high: 64, step: 8}
            dropout: {low: 0.0, high: 0.5, step: 0.1}
          data:
            batch_size: {low: 16, high: 256, log: true}
    """)
    assert not space.has_conditionals
    dists = space.distributions()
    assert dists == {"data.batch_size": IntDistribution(16, 256, log=True),
                     "model.dropout": FloatDistribution(0.0, 0.5, step=0.1),
                     "model.width": IntDistribution(8, 64, step=8),
                     "optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
                     "optimizer.betas": CategoricalDistribution(["[0.9,0.999]",
                                                                 "[0.8,0.99]"])}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(5):
        trial = study.ask()
        config = space.define_by_run(trial)
        assert trial.distributions == dists
        fixed_trial = study.ask(fixed_distributions=dists)
        assert set(fixed_trial.params) == set(dists)
        assert space.config_from_params(trial.params) == config
    by_name = {p.name: p for p in space.params}
    assert by_name["model.dropout"].grid() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert by_name["model.width"].grid() == [8, 16, 24, 32, 40, 48, 56, 64]
    with pytest.raises(ValueError, match="optimizer.lr has no finite grid"):
        space.grid()


def test_sampling_order_puts_condition_targets_first():
    space = load("""
        space:
          data:
            batch_size: {choices: [32, 64], when: {model.width: 16}}
          model:
            width: {choices: [16, 32]}
    """)
    assert [p.name for p in space.params] == ["model.width", "data.batch_size"]
    seen = {tuple(sorted(p)) for p, _ in space.sample(20, 0)}
    assert seen == {("model.width",), ("data.batch_size", "model.width")}


def test_when_by_setting_path_or_by_name():
    text = """
        space:
          optimizer:
            name:
              choices:
                adamw: {amsgrad: {choices: [true, false]}}
                sgd: {}
          augment:
            mixup: {low: 0.1, high: 0.2, when: {%s: true}}
    """
    a = load(text % "optimizer.amsgrad")
    b = load(text % "optimizer.name.adamw.amsgrad")
    assert a == b
    assert a.params[-1].when == (Condition("optimizer.name.adamw.amsgrad", (True,)),)
    ambiguous = text.replace("sgd: {}", "adam: {amsgrad: {choices: [true]}}")
    assert "searched in several branches" in str(error_of(ambiguous % "optimizer.amsgrad"))


def test_fixed_values_resolution_and_variant_specific_fixed_values():
    space = load("""
        optimizer:
          momentum: 0.9
          lr: 0.05
        model:
          width: 24
        space:
          model:
            dropout: 0.1
          optimizer:
            name: {choices: [adamw, sgd]}
    """)
    assert space.fixed["optimizer"] == {**defaults()["optimizer"], "lr": 0.05}
    assert space.fixed["model"]["width"] == 24 and space.fixed["model"]["dropout"] == 0.1
    assert space.fixed_values == {"data": {}, "model": {"width": 24, "dropout": 0.1},
                                  "optimizer": {"momentum": 0.9, "lr": 0.05},
                                  "scheduler": {}, "regularization": {}, "augment": {},
                                  "train": {}}
    configs = {c["optimizer"]["name"]: c["optimizer"] for _, c in space.sample(12, 0)}
    assert configs["sgd"]["momentum"] == 0.9 and "momentum" not in configs["adamw"]
    assert configs["sgd"]["lr"] == 0.05
    # a fixed value the space can never use is a mistake
    err = error_of("optimizer: {momentum: 0.9}\n")
    assert "optimizer.momentum is not an option of the optimizer this space can select (adamw)"\
        in str(err)


def test_searched_value_overrides_fixed_value():
    space = load("""
        model: {dropout: 0.4}
        space:
          model:
            dropout: {low: 0.0, high: 0.2}
    """)
    assert space.fixed["model"]["dropout"] == 0.4
    assert all(c["model"]["dropout"] <= 0.2 for _, c in space.sample(5, 0))


def test_int_and_float_kinds():
    space = load("""
        space:
          data:
            batch_size: {low: 16, high: 64, step: 16}
          model:
            dropout: {low: 0, high: 1.0e-1}
          regularization:
            grad_clip: {choices: [null, 1, 5.0]}
    """)
    by_name = {p.name: p for p in space.params}
    assert by_name["data.batch_size"].distribution == IntDistribution(16, 64, step=16)
    assert by_name["model.dropout"].distribution == FloatDistribution(0.0, 0.1)
    assert by_name["regularization.grad_clip"].choices == (None, 1.0, 5.0)
    for _, config in space.sample(10, 1):
        assert isinstance(config["data"]["batch_size"], int)
        assert config["data"]["batch_size"] in (16, 32, 48, 64)
        assert config["regularization"]["grad_clip"] in (None, 1.0, 5.0)


def test_config_from_params_checks_what_it_is_given():
    space = load(BRANCHY)
    good = {"optimizer.name": "sgd", "optimizer.lr": "0.01",
            "optimizer.name.sgd.momentum": "0.6", "augment.mixup": 0.3,
            "optimizer.name.adam.amsgrad": True}  # strings (as MLflow keeps them); an extra
    config = space.config_from_params(good)
    assert config["optimizer"]["lr"] == 0.01 and config["optimizer"]["momentum"] == 0.6
    with pytest.raises(SpaceError, match="unknown parameter.*did you mean 'optimizer.lr'"):
        space.config_from_params({**good, "optimizer.lrr": 0.1})
    with pytest.raises(SpaceError, match="optimizer.name.sgd.momentum: missing"):
        space.config_from_params({"optimizer.name": "sgd", "optimizer.lr": 0.01,
                                  "augment.mixup": 0.3})
    with pytest.raises(SpaceError, match=r"optimizer.lr: outside its domain \(float in"):
        space.config_from_params({**good, "optimizer.lr": 0.5})
    with pytest.raises(SpaceError, match="optimizer.name: outside its domain"):
        space.config_from_params({**good, "optimizer.name": "rmsprop"})


def test_config_with_overrides():
    space = load_space(shipped("quickstart"))
    config = space.config_with({"optimizer.momentum": 0.9, "optimizer.name": "sgd",
                                "optimizer.nesterov": "true", "model.width": "16"})
    assert config["optimizer"] == {**defaults({"optimizer": "sgd"})["optimizer"],
                                   "momentum": 0.9, "nesterov": True}
    assert config["model"]["width"] == 16 and config["train"]["epochs"] == 12
    betas = space.config_with({"optimizer.betas": "[0.9, 0.99]"})["optimizer"]["betas"]
    assert betas == [0.9, 0.99]
    assert space.config_with({}) == space.fixed
    for bad, needle in [
        ({"optimizer.momentum": 0.9}, "not an option of optimizer 'adamw' (only of sgd, "),
        ({"optimizer.lrr": 0.1}, "did you mean 'lr'"),
        ({"optimzer.lr": 0.1}, "did you mean 'optimizer'"),
        ({"optimizer.lr": "fast"}, "optimizer.lr: must be a number, got 'fast'"),
        ({"model.width": 3.5}, "must be an integer"),
        ({"optimizer.name": "sgdd"}, "unknown optimizer"),
        ({"optimizer.name": "sgd", "optimizer.nesterov": True}, "needs momentum > 0"),
        ({"data.dataset": "image_folder"}, "data.root: required for dataset 'image_folder'"),
        ({"model.dropout": 1.0}, "must be in [0, 1)"),
    ]:
        with pytest.raises(SpaceError) as info:
            space.config_with(bad)
        assert needle in str(info.value), (bad, str(info.value))


def test_equality_is_by_content():
    a = load("""
        name: s
        model: {width: 32, dropout: 0.2}
        space:
          optimizer:
            lr: {low: 1.0e-4, high: 1.0e-2, log: true}
          model:
            hidden: {choices: [64, 128]}
    """)
    b = load("""
        space:
          model:
            hidden: {choices: [64, 128]}
          optimizer:
            lr: {log: true, high: 0.01, low: 0.0001}
        model: {dropout: 0.2}
        name: s
    """)
    assert a == b  # key order and values equal to the defaults (width 32) do not matter
    assert a != load("name: s\nmodel: {dropout: 0.2}\n")
    assert a != load(a.to_yaml().replace("high: 0.01", "high: 0.02"))
    assert pickle.loads(pickle.dumps(a)) == a
    assert load_space(a.to_yaml()) == a


def test_accessors_return_copies():
    space = load_space(shipped("quickstart"))
    space.fixed["model"]["width"] = 999
    with pytest.raises(dataclasses.FrozenInstanceError):  # the sections are frozen
        space.budget.trials = 999
    space.stages[0].as_dict()["epochs"] = 999
    space.fixed_values["train"]["epochs"] = 999
    assert space.fixed["model"]["width"] != 999 and space.budget.trials == 16
    assert space.stages[0].options["epochs"] == 2 and "epochs" not in space.fixed_values["train"]


def test_sources_and_names(tmp_path: Path):
    path = tmp_path / "my_space.yaml"
    path.write_text("space:\n  model:\n    width: {choices: [8, 16]}\n")
    for source in (path, str(path)):
        space = load_space(source)
        assert space.name == "my_space" and space.source == path
    assert load_space("seed: 3\n").name == "space"
    assert load_space("seed: 3\n", filename="x/other.yaml").name == "other"
    assert load_space("name: given\n", filename="x.yaml").name == "given"
    err = error_of("name: has space\n")
    assert "name: must be letters" in str(err)
    with pytest.raises(SpaceError, match="no such space file.*did you mean.*my_space.yaml"):
        load_space(tmp_path / "my_spac.yaml")
    with pytest.raises(SpaceError, match="is a folder"):
        load_space(tmp_path)
    assert shipped("quickstart").name == "quickstart.yaml"
    assert shipped("digits_mlp.yaml").exists()
    with pytest.raises(SpaceError, match="did you mean 'quickstart'"):
        shipped("quickstrt")


def test_same_seed_same_samples_different_seed_different():
    space = load_space(shipped("quickstart"))
    assert space.sample(4, 11) == space.sample(4, 11)
    assert space.sample(4, 11) != space.sample(4, 12)
    assert space.sample(2) == space.sample(2, space.seed)


def test_a_file_that_is_not_text(tmp_path: Path):
    path = tmp_path / "image.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(SpaceError, match="image.yaml: not a text file"):
        load_space(path)


def test_int_params_accept_integral_floats_from_json():
    space = load("space:\n  model:\n    width: {low: 8, high: 64}\n")
    assert space.config_from_params({"model.width": 16.0})["model"]["width"] == 16
    with pytest.raises(SpaceError, match="outside its domain"):
        space.config_from_params({"model.width": 16.5})


def test_the_master_seed_seeds_weights_batches_and_split():
    assert load("seed: 0\n").fixed["train"]["seed"] == 0
    space = load("seed: 7\nspace:\n  optimizer:\n    lr: {low: 1.0e-3, high: 1.0e-1}\n")
    assert space.sampler.seed == 7
    config = space.sample(1)[0][1]
    assert config["train"]["seed"] == 7 and config["data"]["split_seed"] == 7
    assert space.fixed["train"]["seed"] == 7 and space.fixed["data"]["split_seed"] == 7
    assert load(space.to_yaml()) == space  # round trip
    # written values win, a written 0 included; a searched seed stays searched
    own = load("seed: 7\ntrain: {seed: 0}\ndata: {split_seed: 3}\n").fixed
    assert own["train"]["seed"] == 0 and own["data"]["split_seed"] == 3
    searched = load("seed: 7\nspace:\n  train:\n    seed: {choices: [1, 2]}\n")
    assert {c["train"]["seed"] for _, c in searched.sample(6)} <= {1, 2}
    assert searched.fixed["data"]["split_seed"] == 7
