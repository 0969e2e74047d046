"""The search-side sections: defaults filled, options that do not apply rejected, and the
combinations that Optuna and Ray Tune cannot run."""
from __future__ import annotations

import dataclasses

import pytest
from space_helpers import error_of, load

from spaces import sections as S
from spaces.section_types import Budget, Objective, Pruner, Resources, Sampler, Tracking
from spaces.sections import parse_duration
from trainers.catalog import defaults


def test_defaults():
    space = load("seed: 5\nname: d\n")
    assert space.objectives == (Objective("val_accuracy", "maximize"),)
    epochs = defaults()["train"]["epochs"]
    assert space.budget == Budget(trials=20, max_epochs=epochs, time_limit=None, target=None)
    assert space.sampler == Sampler(name="tpe", seed=5, n_startup_trials=8, multivariate=True,
                                    group=True, constant_liar=True)
    assert space.pruner == Pruner(name="asha", grace_period=1, reduction_factor=3, brackets=1)
    assert space.resources == Resources(cpu=1.0, gpu=0.0, max_concurrent=None)
    assert space.tracking == Tracking(enabled=True, uri=None, experiment="d",
                                      keep_checkpoints=3, register_as="d")
    assert space.stages == ()


@pytest.mark.parametrize("raw, expected", [
    ("val_loss", [{"metric": "val_loss", "direction": "minimize"}]),
    ("{metric: val_loss, direction: maximize}", [{"metric": "val_loss",
                                                  "direction": "maximize"}]),
    ("[val_accuracy, {metric: latency_ms}]", [
        {"metric": "val_accuracy", "direction": "maximize"},
        {"metric": "latency_ms", "direction": "minimize"}]),
])
def test_objective_forms(raw, expected):
    assert load(f"objective: {raw}\n").sections()["objective"] == expected


def test_multi_objective_defaults_and_limits():
    space = load("objective: [val_accuracy, num_params]\n")
    assert space.pruner.as_dict() == {"name": "none"}  # Pareto pruning only when named
    assert load("objective: [val_accuracy, num_params]\npruner: {name: asha}\n").pruner.name \
        == "asha"
    assert "each metric may appear once" in str(error_of(
        "objective: [val_accuracy, val_accuracy]\n"))
    assert "needs at least one metric" in str(error_of("objective: []\n"))
    assert "pbt needs a single objective" in str(error_of(
        "objective: [val_accuracy, num_params]\npruner: {name: pbt}\n"))
    for sampler in ("tpe", "gp", "random", "qmc", "nsga2"):
        load(f"objective: [val_accuracy, num_params]\nsampler: {{name: {sampler}}}\n")


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1h30m", 5400.0), ("1.5h", 5400.0),
    (45, 45), (2.5, 2.5), ("soon", "soon"), ("", ""),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_budget():
    space = load("budget: {trials: 3, time_limit: 30m, target: 0.99}\n"
                 "space:\n  train:\n    epochs: {choices: [5, 30, 9]}\n")
    assert space.budget.as_dict() == {"trials": 3, "max_epochs": 30, "time_limit": 1800.0,
                                      "target": 0.99}
    assert "budget.trials: must be in [1, 100000], got 0" in str(error_of("budget: {trials: 0}"))
    assert "budget.time_limit" in str(error_of("budget: {time_limit: -5}"))
    assert "budget.max_epochs: must be an integer, got 2.5" in str(
        error_of("budget: {max_epochs: 2.5}"))


def test_sampler_options_follow_the_sampler():
    assert load("sampler: {name: qmc, qmc_type: halton}").sampler.as_dict() == {
        "name": "qmc", "seed": 0, "qmc_type": "halton"}
    assert load("seed: 4\nsampler: {name: random, seed: 9}").sampler.as_dict() == {
        "name": "random", "seed": 9}
    assert load("sampler: {name: gp, n_startup_trials: 4}").sampler.n_startup_trials == 4
    err = error_of("sampler:\n  name: cmaes\n  constant_liar: false\n")
    assert err.line == 3 and "does not apply to sampler name cmaes (only to tpe)" in str(err)
    assert "did you mean 'tpe'" in str(error_of("sampler: {name: tpee}"))
    assert "did you mean 'n_startup_trials'" in str(
        error_of("sampler: {n_startup_trial: 3}"))


def test_grid_sampler_takes_stepped_floats_ints_and_choices():
    space = load("""
        sampler: {name: grid}
        space:
          model:
            dropout: {low: 0.0, high: 0.2, step: 0.1}
            width: {low: 8, high: 16, step: 8}
            activation: {choices: [relu, gelu]}
    """)
    assert space.grid() == {"model.dropout": [0.0, 0.1, 0.2], "model.width": [8, 16],
                            "model.activation": ["relu", "gelu"]}


def test_pruners():
    assert load("pruner: {name: pbt}").sampler.name == "random"
    assert load("pruner: {name: pbt, perturbation_interval: 3}").pruner.as_dict() == {
        "name": "pbt", "perturbation_interval": 3, "quantile_fraction": 0.25}
    assert load("pruner: {name: median, grace_period: 3}").pruner.as_dict() == {
        "name": "median", "grace_period": 3}
    assert load("pruner: {name: hyperband}").pruner.as_dict() == {
        "name": "hyperband", "reduction_factor": 3}
    assert "grace_period: does not apply to pruner name hyperband" in str(
        error_of("pruner: {name: hyperband, grace_period: 2}"))
    assert "quantile_fraction: must be in (0, 0.5]" in str(
        error_of("pruner: {name: pbt, quantile_fraction: 0.6}"))
    assert "brackets: does not apply to pruner name median" in str(
        error_of("pruner: {name: median, brackets: 2}"))
    assert "reduction_factor: must be in [2, inf]" in str(
        error_of("pruner: {reduction_factor: 1}"))
    assert "must not exceed budget.max_epochs (4)" in str(
        error_of("budget: {max_epochs: 4}\npruner: {name: pbt, perturbation_interval: 5}"))


def test_resources_and_tracking():
    assert load("resources: {cpu: 0.5, gpu: 1, max_concurrent: 3}").resources.as_dict() == {
        "cpu": 0.5, "gpu": 1.0, "max_concurrent": 3}
    assert "resources.gpu: must be in [0, 1] (a trial trains on one GPU" in str(
        error_of("resources: {gpu: 2}"))
    assert load("resources: {gpu: 0.25}").resources.gpu == 0.25
    assert "resources.cpu: must be in (0, inf]" in str(error_of("resources: {cpu: 0}"))
    assert "resources.gpu" in str(error_of("resources: {gpu: -1}"))
    tracking = load("name: n\ntracking: {uri: 'sqlite:////tmp/x.db', experiment: e}").tracking
    assert tracking.uri == "sqlite:////tmp/x.db" and tracking.experiment == "e"
    assert tracking.register_as == "n"
    assert "tracking.keep_checkpoints" in str(error_of("tracking: {keep_checkpoints: -1}"))


def test_stages():
    space = load("""
        stages:
          - stage: finetune
            mode: transfer
            freeze: 2
            knn: 5
            data: {batch_size: 32}
    """)
    assert space.sections()["stages"] == [{
        "stage": "finetune", "mode": "transfer", "lr_scale": 0.1, "epochs": 3, "freeze": 2,
        "knn": 5, "data": {"batch_size": 32}, "enabled": True}]
    distill = load("stages: [{stage: distill, student: {name: mlp, width: 64}}]").stages[0]
    distill = distill.options
    assert distill["student"]["name"] == "mlp" and distill["student"]["width"] == 64
    assert distill["student"]["depth"] == 2  # the catalog default of an mlp
    default = load("stages: [{stage: distill}]").stages[0].options["student"]
    assert (default["name"], default["width"], default["hidden"]) == ("cnn", 8, 32)
    assert default["dropout"] == 0.0
    mixed = load("stages: [{stage: distill, augment: {mixup: 0.4, shift: 2}}]").stages[0]
    mixed = mixed.options
    assert mixed["augment"] == {"mixup": 0.4, "shift": 2}
    assert load("stages: [{stage: distill}]").stages[0].options["augment"] is None
    quantize = load("stages: [{stage: quantize, mode: float16}]").stages[0].as_dict()
    assert quantize == {"stage": "quantize", "mode": "float16", "enabled": True}
    for text, needle in [
        ("stages: {stage: finetune}", "must be a list"),
        ("stages: [finetune]", "a stage is a mapping"),
        ("stages: [{mode: full}]", "unknown stage (one of finetune, distill, quantize), "
                                   "got nothing"),
        ("stages: [{stage: finetune, lr_scale: 1.5}]", "stages[0].lr_scale: must be in (0, 1]"),
        ("stages: [{stage: distill, alpha: 1.5}]", "stages[0].alpha: must be in [0, 1]"),
        ("stages: [{stage: distill, distance: l2}]", "one of kl, mse, wasserstein"),
        ("stages: [{stage: distill, student: {name: vit}}]", "unknown model"),
        ("stages: [{stage: distill, student: {name: factory}}]", "factory is required"),
        ("stages: [{stage: finetune, data: {batchsize: 3}}]", "did you mean 'batch_size'"),
        ("stages: [{stage: finetune, data: {dataset: digits, root: /x}}]",
         "unknown data option for dataset 'digits'"),
        ("stages: [{stage: quantize, mode: float16, backend: x86}]",
         "backend: does not apply to quantize mode float16"),
        ("stages: [{stage: quantize, calibration_batches: 0}]", "must be in [1, inf]"),
        ("stages: [{stage: finetune, enabled: maybe}]", "must be true or false"),
        ("stages: [{stage: distill, augment: {mixpu: 0.4}}]",
         "stages[0].augment.mixpu: unknown augment option, got 'mixpu' (did you mean 'mixup'?)"),
        ("stages: [{stage: distill, augment: {mixup: -1}}]", "augment.mixup: must be in"),
        ("stages: [{stage: distill, augment: 0.4}]", "stages[0].augment: must be a mapping"),
        ("stages: [{stage: finetune, augment: {mixup: 0.4}}]", "unknown finetune option"),
    ]:
        assert needle in str(error_of(text)), text


@pytest.mark.parametrize("table, cls", [
    (S.OBJECTIVE, Objective), (S.BUDGET, Budget), (S.SAMPLER, Sampler), (S.PRUNER, Pruner),
    (S.RESOURCES, Resources), (S.TRACKING, Tracking)])
def test_each_typed_section_has_a_field_per_option(table, cls):
    """spaces/section_types.py and the option tables name the same options: an option added to
    a table without its field (or the reverse) fails here, not in a user's run."""
    assert [f.name for f in dataclasses.fields(cls)] == list(table.options)
