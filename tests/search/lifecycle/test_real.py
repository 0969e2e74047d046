"""End to end with the real trainer on small real data (no download): spaces → Ray Tune →
trainers.fit → the study, checkpoints included."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search.studies import study as studies
from search.lifecycle.runner import RunOptions, run_search
from spaces import load_space

pytestmark = pytest.mark.slow

DIGITS = """
name: real_digits
seed: 3
data: {dataset: digits, batch_size: 32}
model: {name: mlp, width: 32, depth: 1}
train: {epochs: 3}
space:
  optimizer:
    lr: {low: 1.0e-2, high: 5.0e-2, log: true}
  model:
    dropout: {low: 0.0, high: 0.3}
objective: {metric: val_accuracy}
budget: {trials: 3}
sampler: {name: tpe, n_startup_trials: 2}
pruner: {name: asha, grace_period: 1, reduction_factor: 2}
resources: {cpu: 1}
tracking: {enabled: false}
"""

MNIST_CNN = """
name: real_mnist
data: {dataset: mnist5k, batch_size: 128}
model: {name: cnn, width: 8, depth: 1, hidden: 0}
train: {epochs: 1}
space:
  optimizer:
    name: {choices: [adamw, sgd]}
objective: [{metric: val_accuracy}, {metric: num_params}]
budget: {trials: 2}
sampler: {name: random}
pruner: {name: none}
resources: {cpu: 1}
tracking: {enabled: false}
"""


def test_digits_mlp_with_asha(ray_cluster, tmp_path):
    space = load_space(DIGITS, filename="real_digits.yaml")
    outcome = run_search(space, RunOptions(output=str(tmp_path), live=False, retries=0))
    study = studies.load_study(studies.open_storage(outcome.storage_url), "real_digits")
    assert len(study.trials) == 3 and outcome.exit_code == 0
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done, [t.user_attrs for t in study.trials]
    for t in done:
        # learnt something (chance is 0.1) in 3 short epochs; how much is the trainer's business
        assert 0.15 < t.value <= 1.0 and 0.15 < t.user_attrs["test_accuracy"] <= 1.0
        assert t.user_attrs["num_params"] > 1000
        assert t.user_attrs["device"] == "cpu"  # recorded per trial (a GPU's name there)
        assert sorted(t.intermediate_values) == [1, 2, 3]
        checkpoints = list((tmp_path / outcome.run_id).glob(
            f"trial_{t.user_attrs['tune_trial_id']}/checkpoint_*/best.pt"))
        assert len(checkpoints) == 1  # the trainer's checkpoint, kept by Tune
    for t in study.trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)


def test_mnist5k_cnn_two_objectives(ray_cluster, tmp_path):
    space = load_space(MNIST_CNN, filename="real_mnist.yaml")
    outcome = run_search(space, RunOptions(output=str(tmp_path), live=False, retries=0))
    study = studies.load_study(studies.open_storage(outcome.storage_url), "real_mnist")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for t in study.trials:
        accuracy, size = t.values
        assert 0.5 < accuracy <= 1.0 and size == t.user_attrs["num_params"] > 100
    assert studies.best_trials(study)


def test_latency_objective_is_measured(ray_cluster, tmp_path):
    text = MNIST_CNN.replace("name: real_mnist", "name: real_latency").replace(
        "{metric: num_params}", "{metric: latency_ms}").replace("trials: 2", "trials: 1")
    space = load_space(text, filename="real_latency.yaml")
    outcome = run_search(space, RunOptions(output=str(tmp_path), live=False, retries=0))
    study = studies.load_study(studies.open_storage(outcome.storage_url), "real_latency")
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    accuracy, latency = trial.values
    assert 0.5 < accuracy <= 1.0 and 0.0 < latency < 1000.0
