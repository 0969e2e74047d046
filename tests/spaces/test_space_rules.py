"""Cross-field rules: a space is rejected when any config it can produce breaks one; spaces
whose every config is fine load, however close they come."""
from __future__ import annotations

import pytest
from space_helpers import error_of, load

from spaces import SpaceError, rules
from spaces.rules import RULES, broken, image_size
from trainers.catalog import defaults


def test_defaults_break_no_rule():
    assert broken(defaults()) is None
    for dataset in ("mnist5k", "digits", "cifar10", "mnist", "cifar100", "fashion_mnist"):
        assert broken(defaults({"data": dataset})) is None


CASES = [
    ({"optimizer": {"name": "sgd", "nesterov": True, "momentum": 0.0}}, "optimizer.nesterov"),
    ({"optimizer": {"name": "sgd", "nesterov": True, "momentum": 0.9, "dampening": 0.1}},
     "optimizer.nesterov"),
    ({"data": {"val_fraction": 0.6, "test_fraction": 0.4}}, "data.test_fraction"),
    ({"data": {"batch_size_max": 256}}, "data.batch_size_max"),
    ({"data": {"batch_size_max": 32, "batch_size_double_every": 2}}, "data.batch_size_max"),
    ({"scheduler": {"warmup_epochs": 12}, "train": {"epochs": 12}}, "scheduler.warmup_epochs"),
    ({"train": {"swa_start": 13, "epochs": 12}}, "train.swa_start"),
    ({"model": {"padding_mode": "reflect", "depth": 6}}, "model.padding_mode"),  # 28..2 -> 1 px
    ({"data": {"resize": 16}, "model": {"padding_mode": "reflect", "depth": 5}},
     "model.padding_mode"),
    ({"model": {"padding_mode": "circular", "kernel_size": 5, "depth": 6}},
     "model.padding_mode"),
    ({"augment": {"cutout": 0.5, "cutout_size": 29}}, "augment.cutout_size"),
    ({"data": {"kfold": 1}}, "data.kfold"),
    # a dataset's official test split is its test split; a pooled one needs a test fraction
    ({"data": {"dataset": "cifar10", "test_fraction": 0.2}}, "data.test_fraction"),
    ({"data": {"dataset": "mnist5k", "test_fraction": 0.0}}, "data.test_fraction"),
    ({"model": {"name": "cnn1d"}}, "model.name"),  # sequences only; mnist5k holds images
]


def _config(change):
    selected = {g: v.get("name", v.get("dataset")) for g, v in change.items()
                if "name" in v or "dataset" in v}
    config = defaults(selected)
    for group, values in change.items():
        config[group].update(values)
    return config


@pytest.mark.parametrize("change, rule_path", CASES)
def test_each_rule_catches_its_combination(change, rule_path):
    found = broken(_config(change))
    assert found is not None and found[0].path == rule_path


def test_limits_that_are_fine():
    config = defaults({"optimizer": "sgd"})
    config["optimizer"].update(nesterov=True, momentum=0.5)
    config["model"].update(depth=5, padding_mode="reflect")  # 28 -> 14 -> 7 -> 4 -> 2: pad 1 fits
    config["scheduler"]["warmup_epochs"] = 11
    config["train"].update(epochs=12, swa_start=12)
    config["augment"].update(cutout=1.0, cutout_size=28)
    assert broken(config) is None
    for dataset, fraction in (("cifar10", 0.0), ("factory", 0.0), ("mnist5k", 0.3)):
        data = defaults({"data": dataset})["data"]
        assert broken({**config, "data": {**data, "test_fraction": fraction}}) is None
    config["model"]["downsample"] = "none"  # no downsampling: the map stays 28 px at any depth
    config["model"]["depth"] = 8
    assert broken(config) is None


def test_image_sizes():
    assert image_size(defaults()) == 28
    assert image_size(defaults({"data": "digits"})) == 8
    folder = defaults({"data": "image_folder"})
    folder["data"]["image_size"] = 64
    assert image_size(folder) == 64
    folder["data"]["resize"] = 40
    assert image_size(folder) == 40
    assert image_size(defaults({"data": "factory"})) is None


def test_fixed_settings_that_break_a_rule_point_at_their_line():
    err = error_of("""
        optimizer:
          name: sgd
          nesterov: true
    """)
    assert err.line == 4 and err.path == "optimizer.nesterov"
    assert "needs momentum > 0 and dampening 0, got momentum=0, dampening=0" in str(err)


def test_a_space_that_can_break_a_rule_is_rejected_with_the_culprits():
    err = error_of("""
        space:
          optimizer:
            name:
              choices:
                adamw: {}
                sgd:
                  nesterov: {choices: [true, false]}
                  momentum: {low: 0.0, high: 0.9}
    """)
    assert "the space can produce such configs (optimizer.name=sgd, " \
           "optimizer.name.sgd.momentum=0, optimizer.name.sgd.nesterov=true)" in str(err)
    err = error_of("""
        data: {dataset: digits}
        model: {padding_mode: reflect}
        space:
          model:
            depth: {low: 2, high: 5}
    """)
    assert "reflect padding of 1 px needs larger feature maps" in str(err)
    assert "the space can produce such configs (model.depth=" in str(err)
    assert err.line == 6  # the spec that can go too far


def test_spaces_that_stay_inside_the_rules_load():
    load("""
        space:
          optimizer:
            name:
              choices:
                adamw: {}
                sgd:
                  nesterov: {choices: [true, false]}
                  momentum: {low: 0.5, high: 0.9}
    """)
    # depth is only large where the images allow it: conditions are followed exactly
    space = load("""
        space:
          data:
            dataset:
              choices:
                digits: {}
                cifar10: {}
          model:
            downsample:
              choices:
                pool: {depth: {choices: [2, 3]}}
                stride: {depth: {low: 4, high: 8}}
    """)
    assert space.probed
    # an epochs search that always stays above the warmup
    load("""
        scheduler: {warmup_epochs: 3}
        space:
          train:
            epochs: {low: 4, high: 20}
    """)
    err = error_of("""
        scheduler: {warmup_epochs: 3}
        space:
          train:
            epochs: {low: 3, high: 20}
    """)
    assert "warmup_epochs must be smaller than train.epochs" in str(err)


class _Recorder(dict):
    """A config group that records which options a rule looks at."""

    def __init__(self, group, values, seen):
        super().__init__(values)
        self.group, self.seen = group, seen

    def __getitem__(self, key):
        self.seen.add(f"{self.group}.{key}")
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.seen.add(f"{self.group}.{key}")
        return super().get(key, default)


@pytest.mark.parametrize("change", [c for c, _ in CASES] + [{}])
def test_every_rule_declares_what_it_reads(change):
    """The probe varies only what rules declare in `reads`; a rule reading more would be
    probed wrongly."""
    config = _config(change)
    for rule in RULES:
        seen: set[str] = set()
        rule.check({g: _Recorder(g, v, seen) for g, v in config.items()})
        assert seen <= set(rule.reads), (rule.path, seen - set(rule.reads))


def test_huge_spaces_are_checked_when_sampled(monkeypatch):
    monkeypatch.setattr(rules, "PROBE_LIMIT", 1)  # stops before the bad combination
    space = load("""
        space:
          optimizer:
            name:
              choices:
                adamw: {}
                sgd:
                  nesterov: {choices: [true]}
                  momentum: {choices: [0.5, 0.0]}
          data:
            batch_size: {choices: [16, 32, 64]}
    """)
    assert not space.probed
    with pytest.raises(SpaceError, match="needs momentum > 0.*a sampled config"):
        space.config_from_params({"optimizer.name": "sgd", "data.batch_size": 16,
                                  "optimizer.name.sgd.nesterov": True,
                                  "optimizer.name.sgd.momentum": 0.0})
    config = space.config_from_params({"optimizer.name": "sgd", "data.batch_size": 16,
                                       "optimizer.name.sgd.nesterov": True,
                                       "optimizer.name.sgd.momentum": 0.5})
    assert config["optimizer"]["nesterov"] is True


def test_a_lone_half_of_the_batch_schedule_is_named():
    err = error_of("data:\n  batch_size: 32\n  batch_size_double_every: 3\n")
    assert err.path == "data.batch_size_double_every" and err.line == 3
    assert "give both or neither" in str(err)
