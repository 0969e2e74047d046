"""`search run --extend`: a finished search continued to more epochs (real Ray, real SQLite,
real MLflow, the known-work trainer, which logs the epoch each call starts from)."""
from __future__ import annotations

from typing import Any

import csv
import io
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.errors import UserError
from search.lifecycle.runner import run_search
from search.lifecycle.summary import status_text
from search.studies import study as studies
from search.testing import toy_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def space(epochs: int, log: Path, **kw) -> Any:
    return toy_space(name="ext", trials=4, epochs=epochs, toy={"epoch_seconds": 0.02,
                                                              "log": str(log)}, **kw)


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_extending_runs_only_the_missing_epochs_and_links_the_trials(ray_cluster, options,
                                                                      tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking = {"enabled": True, "keep_checkpoints": 4}
    log1, log2 = tmp_path / "fit1.log", tmp_path / "fit2.log"
    first = run_search(space(2, log1, tracking=tracking), options(tracking_uri=uri))
    assert first.exit_code == 0 and first.counts["COMPLETE"] == 4
    # 4 epochs now; asha with reduction_factor 2 keeps the top half: 2 continue, 2 are new
    out = io.StringIO()
    second = run_search(space(4, log2, tracking=tracking, pruner_name="asha"),
                        options(tracking_uri=uri, extend=True), stream=out)
    assert second.exit_code == 0
    storage = studies.open_storage(second.storage_url)
    study = studies.load_study(storage, second.study_name)
    old = studies.of_run(study.trials, first.run_id)
    new = studies.of_run(study.trials, second.run_id)
    assert len(new) == 4 and all(t.state == TrialState.COMPLETE or t.state == TrialState.PRUNED
                                 for t in new)
    top2 = sorted(old, key=lambda t: -t.value)[:2]
    continued = [t for t in new if t.user_attrs.get("extends") is not None]
    assert sorted(t.user_attrs["extends"] for t in continued) == sorted(t.number for t in top2)
    assert f"extend: 2 of 4 trials that ran fewer than 4 epochs continue" in out.getvalue()
    # only the missing epochs ran: each continuation started at epoch 2, the new ones at 0
    starts = sorted(c["start"] for c in calls(log2))
    assert starts == [0, 0, 2, 2]
    by_number = {t.number: t for t in study.trials}
    for t in continued:
        original = by_number[t.user_attrs["extends"]]
        assert t.params == original.params and t.state == TrialState.COMPLETE
        assert t.user_attrs["epochs_run"] == 4 and t.user_attrs["horizon"] == 4
        assert sorted(t.intermediate_values) == [1, 2, 3, 4]  # the whole curve
        assert t.intermediate_values[2] == original.intermediate_values[2]
        assert t.value > original.value
        with open(Path(t.user_attrs["trial_dir"]) / "progress.csv") as f:
            seen = [int(row["training_iteration"]) for row in csv.DictReader(f)]
        # Tune saw epochs 3 and 4 only (3 may come held with 4's report: ASHA decides at 4)
        assert seen in ([3, 4], [4]), seen
        tags = MlflowClient(uri).get_run(t.user_attrs["mlflow_run_id"]).data.tags
        assert tags["search.extends"] == str(original.number)
        assert tags["search.extends_run"] == original.user_attrs["mlflow_run_id"]
    # status and best report the extended result
    best = studies.best_trials(study)[0]
    assert best.user_attrs["run_id"] == second.run_id and best.user_attrs["horizon"] == 4
    text = status_text(study, second.objectives, [])
    assert f"best: trial #{best.number}" in text
    if best.user_attrs.get("extends") is not None:
        assert f"continues #{best.user_attrs['extends']}" in text


@pytest.mark.slow
def test_extending_a_search_of_repeated_seeds_continues_every_seed(ray_cluster, options,
                                                                  tmp_path):
    """budget.seeds: a continued trial's seeds each restore their own checkpoint and train
    only the missing epochs; the trial's value stays the mean of its seeds."""
    log1, log2 = tmp_path / "fit1.log", tmp_path / "fit2.log"
    def seeded(epochs: int, trials: int, log: Path):
        return toy_space(name="ext_seeds", trials=trials, epochs=epochs, seed=4,
                         toy={"epoch_seconds": 0.02, "log": str(log)}, budget={"seeds": 2},
                         resources={"cpu": 0.5, "max_concurrent": 1})

    first = run_search(seeded(2, 3, log1), options())
    assert first.exit_code == 0 and first.counts["COMPLETE"] == 3
    second = run_search(seeded(4, 2, log2), options(extend=True))
    assert second.exit_code == 0
    study = studies.load_study(studies.open_storage(second.storage_url), second.study_name)
    new = studies.of_run(study.trials, second.run_id)
    assert len(new) == 2 and all(t.user_attrs.get("extends") is not None for t in new)
    # each continued trial's two seeds started from epoch 2, never from scratch
    assert sorted((c["seed"], c["start"]) for c in calls(log2)) == [(4, 2), (4, 2), (5, 2), (5, 2)]
    for t in new:
        assert t.state == TrialState.COMPLETE and sorted(t.intermediate_values) == [1, 2, 3, 4]
        assert t.user_attrs["seeds"] == [4, 5]
        assert t.value == pytest.approx(sum(t.user_attrs["val_accuracy_seeds"]) / 2)


def test_extend_refuses_what_it_cannot_do(tmp_path, options):
    log = tmp_path / "fit.log"
    with pytest.raises(UserError, match="no finished trial to extend"):
        run_search(space(2, log), options(extend=True))
    with pytest.raises(UserError, match="pruner hyperband cannot extend"):
        run_search(space(2, log, pruner_name="hyperband"), options(extend=True))
    with pytest.raises(UserError, match="pruner pbt cannot extend"):
        run_search(space(2, log, pruner_name="pbt", conditional=False), options(extend=True))


def _finished_study(tmp_path, values, *, horizon=2, checkpoints=True):
    """An in-memory study of finished toy trials, each with a trial folder (and checkpoint)."""
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)

    study = optuna.create_study(direction="maximize")
    for i, value in enumerate(values):
        folder = tmp_path / f"trial_{i}"
        if checkpoints:
            (folder / "checkpoint_000001").mkdir(parents=True)
            (folder / "checkpoint_000001" / "last.pt").write_text("{}")
        state = TrialState.PRUNED if value is None else TrialState.COMPLETE
        study.add_trial(optuna.trial.create_trial(
            params={"optimizer.lr": 0.01 * (i + 1), "optimizer.name": "adamw",
                    "model.width": 32},
            distributions={"optimizer.lr": FloatDistribution(1e-4, 1.0, log=True),
                           "optimizer.name": CategoricalDistribution(["adamw", "sgd"]),
                           "model.width": IntDistribution(8, 64, log=True)},
            value=value, state=state, intermediate_values={1: value or 0.1},
            user_attrs={"horizon": horizon, "trial_dir": str(folder)}))
    return study


def test_the_pruners_share_of_the_shorter_trials_continues_best_first(tmp_path):
    from search.lifecycle.extend import plan_extension

    # 6 trials ran 2 epochs (one pruned); asha rf 3 keeps ceil(6/3) = 2: the two best COMPLETE
    study = _finished_study(tmp_path, [0.5, 0.9, None, 0.7, 0.8, 0.6])
    toy = toy_space(epochs=4, trials=5, pruner_name="asha", pruner={"reduction_factor": 3})
    ext = plan_extension(study, toy, toy.budget)
    assert [n for n, _ in ext.chosen] == [1, 4] and ext.horizon == 4 and ext.shorter == 6
    assert ext.chosen[0][1].endswith("trial_1/checkpoint_000001")
    # none keeps all the COMPLETE ones, at most budget.trials
    toy = toy_space(epochs=4, trials=3, pruner_name="none")
    assert [n for n, _ in plan_extension(study, toy, toy.budget).chosen] == [1, 4, 3]
    # a horizon they all ran already: one line saying what to raise
    with pytest.raises(UserError, match="already ran its 2 epochs; raise budget.max_epochs"):
        plan_extension(study, toy_space(epochs=2), toy_space(epochs=2).budget)
    # no checkpoint left: said, nothing continues
    bare = _finished_study(tmp_path / "bare", [0.5, 0.9], checkpoints=False)
    with pytest.raises(UserError, match="has a checkpoint left"):
        plan_extension(bare, toy_space(epochs=4), toy_space(epochs=4).budget)
