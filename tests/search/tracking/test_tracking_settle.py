"""Resuming a search whose driver died: `SearchTracker.settle` ends the runs the dead driver
left RUNNING whose study trials have ended since, seeds' child runs (budget.seeds) included."""
from __future__ import annotations

import optuna
from mlflow import MlflowClient

from search.studies.study import TUNE_TRIAL_ID
from search.tracking.settings import Settings
from search.tracking.tracker import SearchTracker


def _tracker(tmp_path, uri: str, name: str, study) -> SearchTracker:
    settings = Settings(uri=uri, experiment=name,
                        artifact_location=(tmp_path / "mlartifacts").as_uri(),
                        search_id=f"run-1@{name}", name=name, output_dir=str(tmp_path),
                        run_id="run-1", metric="val_accuracy", register_as=name)
    settings.save()
    tracker = SearchTracker(settings.writer(), name=f"{name} run-1", metric="val_accuracy",
                            study=study)
    tracker.start(params={"search.seed": 0}, tags={})
    return tracker


def test_settle_ends_the_seed_runs_of_trials_that_ended_without_their_driver(
        tmp_path, sqlite_uri, unique):
    study = optuna.create_study(direction="maximize")
    ended, running = study.ask(), study.ask()
    for trial, tune_id in ((ended, "a0"), (running, "a1")):
        trial.set_user_attr(TUNE_TRIAL_ID, tune_id)
    dead = _tracker(tmp_path, sqlite_uri, unique, study)
    for tune_id in ("a0", "a1"):
        dead.trial_started(tune_id, {"optimizer": {"lr": 0.01}})
        dead.trial_result(tune_id, {"epoch": 1, "val_accuracy": 0.55,
                                    "seed-4/val_accuracy": 0.5, "seed-5/val_accuracy": 0.6})
    # the driver is killed here; the resume tells the study that trial 0 finished meanwhile
    study.tell(ended, 0.55)
    client = MlflowClient(sqlite_uri)
    runs = client.search_runs([client.get_experiment_by_name(unique).experiment_id])
    assert sorted(r.info.run_name for r in runs if r.info.status == "RUNNING") == \
        sorted(["seed-4", "seed-5"] * 2 + ["trial-000", "trial-001", f"{unique} run-1"])

    resumed = _tracker(tmp_path, sqlite_uri, unique, study)
    assert resumed.settle(study) == 1
    runs = client.search_runs([client.get_experiment_by_name(unique).experiment_id])
    by_id = {r.info.run_id: r for r in runs}
    status = {(by_id[r.data.tags["mlflow.parentRunId"]].info.run_name.split(" ")[0]
               if r.data.tags.get("search.kind") == "seed" else "", r.info.run_name):
              r.info.status for r in runs}
    assert status[("trial-000", "seed-4")] == status[("trial-000", "seed-5")] == "FINISHED"
    # trial 1 is continued by its resumed trial: its seeds' runs stay open for it
    assert status[("trial-001", "seed-4")] == status[("trial-001", "seed-5")] == "RUNNING"
