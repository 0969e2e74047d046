"""Repeated seeds (budget.seeds): the options, the aggregate a pruner decides on, and a real
search whose trials train two seeds each as Ray actors, recorded in the study and MLflow."""
from __future__ import annotations

import json
import math
import statistics

import pytest

from search.testing import toy_space
from search.tune.seeds import aggregate, final, seed_key, seeds_of
from spaces import SpaceError
from spaces.section_types import Objective

MAX = Objective("val_accuracy", "maximize")
MIN = Objective("val_loss", "minimize")


@pytest.mark.parametrize("budget,pruner,rule", [
    ({"seed_penalty": 0.5}, "none", "budget.seed_penalty: has no effect with budget.seeds 1"),
    ({"seeds": 0}, "none", "budget.seeds: must be in [1, 100]"),
    ({"seeds": 2, "seed_penalty": -1}, "none", "budget.seed_penalty: must be in [0, inf]"),
    ({"seeds": 2}, "pbt", "budget.seeds: pruner pbt copies one member's model"),
])
def test_the_seed_options_refused_in_one_line(budget, pruner, rule):
    with pytest.raises(SpaceError) as err:
        toy_space(budget=budget, pruner_name=pruner, conditional=False)
    assert rule in str(err.value) and "\n" not in str(err.value)


def test_the_seed_options_are_shown_and_written_only_when_used():
    space = toy_space(budget={"seeds": 3, "seed_penalty": 1})
    assert "budget: trials 6, max_epochs 3, time_limit null, target null, seeds 3, " \
           "seed_penalty 1" in space.describe()
    assert "seeds" not in toy_space().to_yaml() and "seeds" not in toy_space().describe()


def test_a_pruner_reads_the_penalised_mean_of_the_seeds():
    rows = [{"epoch": 2, "val_accuracy": 0.8, "val_loss": 0.5, "lr": 0.1},
            {"epoch": 2, "val_accuracy": 0.9, "val_loss": 0.3, "lr": 0.1}]
    std = statistics.stdev([0.8, 0.9])
    plain = aggregate(rows, [7, 8], (MAX,), 0.0)
    assert plain["val_accuracy"] == pytest.approx(0.85) and plain["val_accuracy_std"] == \
        pytest.approx(std) and plain["val_loss"] == pytest.approx(0.4)
    assert plain[seed_key(8, "val_accuracy")] == 0.9 and plain["epoch"] == 2
    # toward worse: below the mean when maximised, above it when minimised
    assert aggregate(rows, [7, 8], (MAX,), 2.0)["val_accuracy"] == pytest.approx(0.85 - 2 * std)
    penalised = aggregate(rows, [7, 8], (MIN,), 1.0)
    assert penalised["val_loss"] == pytest.approx(0.4 + statistics.stdev([0.5, 0.3]))
    assert penalised["val_loss_mean"] == pytest.approx(0.4)
    ended = final([{"final_val_accuracy": 0.8, "test_accuracy": 0.7, "selected_epoch": 2},
                   {"final_val_accuracy": math.nan, "test_accuracy": 0.9, "selected_epoch": 3}],
                  [7, 8], (MAX,), 0.0)
    assert math.isnan(ended["final_val_accuracy"]) and ended["selected_epoch"] == 2
    assert ended["test_accuracy"] == pytest.approx(0.8) and ended["seeds"] == [7, 8]
    assert seeds_of({"train": {"seed": 5}}, 3) == [5, 6, 7]


@pytest.mark.slow
def test_a_search_of_two_seeds_reports_their_mean_with_the_seeds_beneath(ray_cluster, options,
                                                                       tmp_path):
    from mlflow import MlflowClient

    from search.lifecycle.runner import run_search
    from search.lifecycle.summary import status_text
    from search.studies import study as studies

    meet, log = tmp_path / "meet", tmp_path / "calls.jsonl"
    meet.mkdir()
    # Both trials' two seeds train at once (they meet), each on a fake GPU of its own: every
    # trial's placement group holds a bundle per seed.
    space = toy_space(name="seeded", trials=2, epochs=2, seed=4, budget={"seeds": 2},
                      toy={"seed_noise": 0.01, "log": str(log), "meet": f"4:{meet}"},
                      resources={"cpu": 0.5, "gpu": 0.25, "max_concurrent": None},
                      train={"device": "cpu"},  # fake GPUs: torch trains on the CPU, as asked
                      tracking={"enabled": True, "keep_checkpoints": 1})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    outcome = run_search(space, options(tracking_uri=uri))
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(c["gpus"] for c in calls) == ["0", "1", "2", "3"]
    study = studies.load_study(studies.open_storage(outcome.storage_url), outcome.study_name)
    trials = studies.of_run(study.trials, outcome.run_id)
    assert outcome.exit_code == 0 and [t.state.name for t in trials] == ["COMPLETE"] * 2
    client = MlflowClient(uri)
    for t in trials:
        values = t.user_attrs["val_accuracy_seeds"]
        # seed 5 learns 0.01 better: 0.0075 after two epochs (known_work_fit)
        assert t.user_attrs["seeds"] == [4, 5] and values[1] - values[0] == pytest.approx(0.0075)
        assert t.values[0] == pytest.approx(sum(values) / 2)
        assert t.user_attrs["val_accuracy_std"] == pytest.approx(statistics.stdev(values))
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.data.metrics["val_accuracy"] == pytest.approx(t.values[0])
        assert run.data.metrics["val_accuracy_std"] == pytest.approx(statistics.stdev(values))
        curve = client.get_metric_history(run.info.run_id, "epoch/val_accuracy")
        assert [m.step for m in curve] == [1, 2]
        children = client.search_runs(
            [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
        assert sorted(c.info.run_name for c in children) == ["seed-4", "seed-5"]
        for child, value in zip(sorted(children, key=lambda c: c.info.run_name), values):
            assert child.data.metrics["val_accuracy"] == pytest.approx(value)
            assert len(client.get_metric_history(child.info.run_id, "epoch/val_accuracy")) == 2
            assert child.info.status == "FINISHED"
    best = max(trials, key=lambda t: t.values[0])
    assert f"= {best.values[0]:.4g} ± " in status_text(study, space.objectives, [])


PARAMS = {"optimizer.lr": 1e-2, "optimizer.name": "adamw", "model.width": 32}


def test_seeds_train_as_actors_resume_from_their_own_files_and_fail_with_their_error(
        ray_cluster, tmp_path):
    from search.tune.seeds import SeedFailed, train_seeds
    from search.tune.trainable import TrialPlan

    def train(space, epochs):
        plan = TrialPlan(space.objectives, space.budget, space.resources,
                         "search.testing:known_work_fit")
        settings = space.config_from_params(PARAMS)
        settings["train"]["epochs"] = epochs
        rows: list[dict] = []
        return rows, train_seeds(plan, settings, rows.append, tmp_path)

    space = toy_space(seed=4, toy={"seed_noise": 0.01}, budget={"seeds": 2})
    rows, (ended, history) = train(space, 2)
    assert [r["epoch"] for r in rows] == [1, 2] and history == rows
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "seed-5" / "last.pt").is_file()
    assert ended["val_accuracy_seeds"][1] - ended["val_accuracy_seeds"][0] == \
        pytest.approx(0.0075)
    rows, (ended, _) = train(space, 3)  # both seeds continue from their own epoch 2
    assert [r["epoch"] for r in rows] == [3]
    assert ended["val_accuracy_seeds"][1] - ended["val_accuracy_seeds"][0] == \
        pytest.approx(0.00875)
    failing = toy_space(seed=4, toy={"user_error_if_seed": 5}, budget={"seeds": 2})
    with pytest.raises(SeedFailed, match="seed 5: UserError: train.seed: toy rule") as err:
        train(failing, 4)
    assert err.value.kind == "known"


def test_a_trial_of_k_seeds_holds_k_shares_of_the_cluster():
    from search.errors import UserError
    from search.lifecycle.plan import concurrency
    from spaces.section_types import Resources

    assert concurrency(Resources(1.0, 0.0), {"CPU": 6}, seeds=3) == 2
    assert concurrency(Resources(1.0, 0.0, max_concurrent=1), {"CPU": 6}, seeds=3) == 1
    with pytest.raises(UserError, match=r"^budget.seeds: each trial trains 4 seeds at once, "
                                        r"each with 1 CPUs and 0 GPUs, but the Ray cluster "
                                        r"holds 3 such at a time"):
        concurrency(Resources(1.0, 0.0), {"CPU": 3}, seeds=4)
