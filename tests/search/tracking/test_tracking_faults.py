"""Faults with real processes: the `mlflow server` is stopped in the middle of a Ray Tune search
and started again (writes are spooled, then replayed), stopped again until after the search
(`search sync` replays the rest, twice without duplicates); a search interrupted like Ctrl-C
and resumed with Tuner.restore reattaches to its runs."""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from ray.tune import Callback

from search.tracking.names import curve_key

pytestmark = pytest.mark.slow

EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "lr", "grad_norm", "epoch_time",
                 "samples_per_sec")
LOADER = "tracking_helpers:load_digits_model"
PARAMS = [{"optimizer.lr": lr, "optimizer.name": "adamw", "model.width": w}
          for lr, w in ((1e-2, 16), (3e-3, 8), (1e-2, 32), (1e-3, 16))]


class Chaos(Callback):
    """Listed before the tracking callback: stops or starts the server when the n-th result
    arrives, and notes whether the tracking writer was spooling then."""

    def __init__(self, server, plan: dict[int, str], tracking) -> None:
        self.server, self.plan, self.tracking = server, plan, tracking
        self.count, self.spooling = 0, {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.count += 1
        self.spooling[self.count] = self.tracking.tracker.writer.down
        action = self.plan.get(self.count)
        if action == "stop":
            self.server.stop()
        elif action == "start":
            self.server.start()

    def __getstate__(self) -> dict:  # Tune pickles callbacks with the Tuner; a server is not
        return {"plan": self.plan, "count": 0, "spooling": {}, "server": None,
                "tracking": None}


def _toy(name: str, epochs: int = 3):
    from search.testing import toy_space

    return toy_space(name=name, epochs=epochs, trials=len(PARAMS),
                     tracking={"keep_checkpoints": 1, "register_as": f"{name}-model"})


def _tuner(space, tmp: Path, callbacks: list, epoch_seconds: float):
    import ray.cloudpickle
    from ray import tune

    import tracking_helpers

    ray.cloudpickle.register_pickle_by_value(tracking_helpers)
    return tune.Tuner(
        tracking_helpers.make_trainable(space, epoch_seconds=epoch_seconds),
        param_space={"params": tune.grid_search(PARAMS)},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(name="run-1", storage_path=str(tmp / "tune"), verbose=0,
                                  callbacks=callbacks,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))


def _runs(uri: str, cb):
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    exp = client.get_experiment_by_name(cb.settings.experiment)
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.`search.id` = '{cb.settings.search_id}'")
    parents = [r for r in runs if r.data.tags["search.key"] == "parent"]
    children = [r for r in runs if r.data.tags["search.key"] != "parent"]
    return client, parents, children


def _assert_complete_record(uri: str, cb, epochs: int) -> dict:
    """One parent, one child per trial, every epoch once, the report and the model: returns
    {run id: {metric: [steps]}} to compare replays."""
    client, parents, children = _runs(uri, cb)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == len(PARAMS)
    parent_id = parents[0].info.run_id
    histories = {}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent_id
        assert child.data.tags["search.state"] == "COMPLETE"
        assert child.info.status == "FINISHED"
        steps = {k: [m.step for m in client.get_metric_history(child.info.run_id, k)]
                 for k in (*map(curve_key, EPOCH_METRICS), "test_accuracy", "val_accuracy")}
        for key in map(curve_key, EPOCH_METRICS):
            assert steps[key] == list(range(1, epochs + 1)), (key, steps[key])
        assert steps["test_accuracy"] == steps["val_accuracy"] == [0]  # one value each
        histories[child.info.run_id] = steps
    names = {a.path for a in client.list_artifacts(parent_id)}
    assert {"summary.csv", "plots"} <= names
    versions = client.search_model_versions(f"name = '{cb.settings.register_as}'")
    assert len(versions) == 1
    best = client.get_model_version_by_alias(cb.settings.register_as, "best")
    best_child = max(children, key=lambda c: (c.data.metrics["val_accuracy"]))
    assert best.run_id == best_child.info.run_id
    kept = [c for c in children
            if any(a.path == "checkpoint" for a in client.list_artifacts(c.info.run_id))]
    assert [c.info.run_id for c in kept] == [best_child.info.run_id]
    return histories


def test_server_down_mid_search_loses_nothing(tmp_path, ray_cluster, mlflow_server, unique):
    from search.cli import main
    from search.tracking import make_tracking

    space = _toy(unique)
    out = tmp_path / "out"
    cb = make_tracking(space, output_dir=out, run_id="run-1", tracking_uri=mlflow_server.uri,
                       loader=LOADER)
    cb.tracker.writer.retry_every = 0.2  # retry soon after the server is back
    # 12 results: down after the 2nd, back at the 5th (replayed mid-run), down again after
    # the 9th until after the search (the end of the search is spooled too).
    chaos = Chaos(mlflow_server, {2: "stop", 5: "start", 9: "stop"}, cb)
    _tuner(space, tmp_path, [chaos, cb], epoch_seconds=0.3).fit()
    try:
        assert chaos.spooling[3] is True  # the 3rd result found the server gone
        assert chaos.spooling[9] is False  # ...and the spool was replayed once it was back
        assert cb.report is not None and cb.report.spooled > 0
        assert cb.report.model_version is None  # registering waits in the spool too
        spool = cb.settings.spool_path
        saved = spool.read_text()
    finally:
        mlflow_server.start()
    assert main(["sync", "--output", str(out)]) == 0
    assert not spool.exists()
    first = _assert_complete_record(mlflow_server.uri, cb, epochs=3)
    # The same spool replayed again (as after a crash mid-sync) changes nothing.
    spool.write_text(saved)
    assert main(["sync", "--output", str(out)]) == 0
    assert _assert_complete_record(mlflow_server.uri, cb, epochs=3) == first
    assert main(["sync", "--output", str(out)]) == 0  # nothing left: still fine


class Interrupt(Callback):
    """Sends SIGUSR1 (Tune's "stop and save" signal, like Ctrl-C) once, at the n-th result."""

    def __init__(self, flag: Path, at: int) -> None:
        self.flag, self.at, self.count = flag, at, 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.count += 1
        if self.count == self.at and not self.flag.exists():
            self.flag.write_text("sent")  # the restored copy of this callback stays quiet
            os.kill(os.getpid(), signal.SIGUSR1)


def test_resume_reattaches_without_duplicates(tmp_path, sqlite_uri, ray_cluster, unique):
    from ray import tune

    import tracking_helpers
    from search.tracking import make_tracking

    space = _toy(unique, epochs=4)
    cb = make_tracking(space, output_dir=tmp_path, run_id="run-1", loader=LOADER)
    assert cb.settings.uri == sqlite_uri
    tuner = _tuner(space, tmp_path, [Interrupt(tmp_path / "sent", at=3), cb],
                   epoch_seconds=0.3)
    tuner.fit()
    client, parents, children = _runs(cb.settings.uri, cb)
    assert len(parents) == 1 and parents[0].info.status == "RUNNING"  # not finished yet
    assert cb.report is None and len(children) < 2 * len(PARAMS)
    assert client.search_registered_models(f"name = '{cb.settings.register_as}'") == []

    restored = tune.Tuner.restore(str(tmp_path / "tune" / "run-1"),
                                  trainable=tracking_helpers.make_trainable(space,
                                                                            epoch_seconds=0.3),
                                  resume_unfinished=True)
    restored.fit()
    _assert_complete_record(cb.settings.uri, cb, epochs=4)
    shutil.rmtree(tmp_path / "tune", ignore_errors=True)
