"""Population-based training: with the real trainer, a mutation of lr reaches the optimiser of
the member that continues another member's checkpoint (trainers.fit takes the optimiser's
hyperparameters from the config, not from the checkpoint it resumes); and the curve a member
that skipped epochs leaves in the study."""
from __future__ import annotations

import json

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search.studies import study as studies
from search.lifecycle.runner import RunOptions, run_search
from spaces import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.slow

PBT_DIGITS = """
name: pbt_digits
seed: 1
data: {dataset: digits, batch_size: 16}
model: {name: mlp, width: 32, depth: 1}
scheduler: {name: none}          # a constant lr: the reported lr is the optimiser's
train: {epochs: 4}
space:
  optimizer:
    lr: {low: 1.0e-5, high: 1.0e-1, log: true}   # seed 1 draws 4.7e-4 and 1e-5: the second
                                                 # member ranks last, so it exploits the first
    weight_decay: {low: 1.0e-5, high: 1.0e-2, log: true}
objective: {metric: val_accuracy}
budget: {trials: 2}
pruner: {name: pbt, perturbation_interval: 1}
resources: {cpu: 1}
tracking: {enabled: false}
"""


def test_a_mutated_lr_is_the_lr_the_trainer_trains_with(ray_cluster, tmp_path):
    space = load_space(PBT_DIGITS, filename="pbt_digits.yaml")
    outcome = run_search(space, RunOptions(output=str(tmp_path), live=False, retries=0))
    study = studies.load_study(studies.open_storage(outcome.storage_url), "pbt_digits")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    # Every epoch's checkpoint (PBT keeps them all) holds the config of the call that trained
    # that epoch and the lineage's history: the epoch just trained used that config's lr.
    checkpoints = sorted(outcome.experiment_dir.glob("trial_*/checkpoint_*/last.pt"))
    assert checkpoints
    changed = 0
    for path in checkpoints:
        state = torch.load(path, weights_only=True)
        lr, history = state["config"]["optimizer"]["lr"], state["history"]
        assert history[-1]["lr"] == pytest.approx(lr, rel=1e-9), path
        changed += any(row["lr"] != pytest.approx(lr, rel=1e-9) for row in history[:-1])
    assert changed, "PBT copied a member and changed its lr at least once"
    for t in study.trials:  # each member recorded with a value at every epoch
        assert sorted(t.intermediate_values) == [1, 2, 3, 4]


def test_a_member_that_skipped_epochs_gets_them_from_the_model_it_carries(tmp_path):
    """Reported 1, copied a member at epoch 2, reported 3 and 4: epoch 2 comes from the
    history of the finished member's model; its own reports are kept where it made them."""
    from search.tune.pbt import StudyRecorder
    from search.lifecycle.plan import Objective
    from search.tune.trainable import HISTORY_FILE

    recorder = StudyRecorder(None, storage_url="", study_name="s", run_id="r",
                             objectives=[Objective("val_accuracy", "maximize")],
                             experiment_dir=str(tmp_path))
    for step, value in ((1, 0.2), (3, 0.7), (4, 0.8)):
        recorder.on_trial_result(step, [], type("T", (), {"trial_id": "b"})(),
                                 {"training_iteration": step, "val_accuracy": value})
    assert recorder._curve("b") == {1: 0.2, 3: 0.7, 4: 0.8}  # not finished: own reports
    (tmp_path / "trial_b").mkdir()
    (tmp_path / "trial_b" / HISTORY_FILE).write_text(json.dumps(
        [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.6},
         {"epoch": 3, "val_accuracy": 0.7}, {"epoch": 4, "val_accuracy": 0.8}]))
    assert recorder._curve("b") == {1: 0.2, 2: 0.6, 3: 0.7, 4: 0.8}
