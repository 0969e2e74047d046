"""The tracker and its writer against real MLflow stores (SQLite files), without Ray: trial
states, metric steps, checkpoints kept and dropped, the spool of a dead backend replayed
(twice, without duplicates), refused writes, reattaching, stages, the Optuna link."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from search.tracking.callback import TUNE_KEYS
from search.tracking.runs import Book
from search.tracking.spool import Spool, Writer
from search.tracking.tracker import SearchTracker


def writer_for(uri: str, spool: Path, search_id: str = "s1") -> Writer:
    return Writer(Book(uri, "exp", None if uri.startswith("http") else
                       (spool.parent / "art").as_uri(), search_id), Spool(spool))


def tracker_for(writer: Writer, **kw) -> SearchTracker:
    kw = {"name": "search", "metric": "val_accuracy", "mode": "max", "keep_checkpoints": 1,
          "budget": 3, **kw}
    return SearchTracker(writer, **kw)


def checkpoint(tmp: Path, name: str) -> str:
    folder = tmp / "ckpt" / name
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(name.encode())
    return str(folder)


def play(tracker: SearchTracker, tmp: Path) -> None:
    """Trial a completes 3 epochs, b is stopped by the scheduler after 1, c is better than a
    (pushing a's checkpoint out of the top 1), d fails."""
    tracker.start(params={"train": {"epochs": 3}, "optimizer": {"lr": 0.01}},
                  tags={"search.name": "search"}, texts={"space.yaml": "name: search\n"})
    for tid, accs, stopped in (("a", [0.5, 0.6, 0.7], False), ("b", [0.2], True),
                               ("c", [0.6, 0.8, 0.9], False)):
        tracker.trial_started(tid, {"params": {"optimizer.lr": 0.01, "model.width": 8}})
        for epoch, acc in enumerate(accs, 1):
            last = epoch == len(accs)
            tracker.trial_result(tid, {"epoch": epoch, "val_accuracy": acc,
                                       "train_loss": 1.0 / epoch, "done": stopped and last,
                                       "time_total_s": 1.0, "config": {"params": {"x": 1}},
                                       "trial_finished": not stopped and last},
                                 stopping=stopped and last, skip=TUNE_KEYS)
        tracker.trial_ended(tid, checkpoint=checkpoint(tmp, tid))
    tracker.trial_started("d", {"params": {"optimizer.lr": 1.0}})
    tracker.trial_result("d", {"epoch": 1, "val_accuracy": 0.1}, skip=TUNE_KEYS)
    tracker.trial_failed("d", "RuntimeError: boom")


def read_back(uri: str, search_id: str = "s1") -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("exp")
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.`search.id` = '{search_id}'")
    out = {}
    for run in runs:
        key = run.data.tags["search.key"]
        history = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
                   for k in run.data.metrics}
        artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
        out[key] = {"tags": run.data.tags, "params": run.data.params, "history": history,
                    "artifacts": artifacts, "status": run.info.status, "id": run.info.run_id,
                    "name": run.info.run_name}
    return out


def check_played(record: dict) -> None:
    assert set(record) == {"parent", "trial/a", "trial/b", "trial/c", "trial/d"}
    parent_id = record["parent"]["tags"]["search.id"]
    assert parent_id == "s1"
    a, b, c, d = (record[f"trial/{k}"] for k in "abcd")
    assert [x["tags"]["search.state"] for x in (a, b, c, d)] == ["COMPLETE", "PRUNED",
                                                                "COMPLETE", "FAILED"]
    assert b["tags"]["search.reason"] == "stopped by the scheduler after epoch 1 of 3"
    assert d["tags"]["search.reason"] == "RuntimeError: boom" and d["status"] == "FAILED"
    # the state in the name: pruned and complete trials no longer look the same
    assert [x["name"] for x in (a, b, c, d)] == ["trial-a (complete)", "trial-b (pruned)",
                                                 "trial-c (complete)", "trial-d (failed)"]
    assert [x["status"] for x in (a, b, c, d)] == ["FINISHED", "FINISHED", "FINISHED",
                                                   "FAILED"]
    # per-epoch values as curves (the epoch is the step, not a metric), the objective once
    assert a["history"]["epoch/val_accuracy"] == [(1, 0.5), (2, 0.6), (3, 0.7)]
    assert set(a["history"]) == {"epoch/val_accuracy", "epoch/train_loss", "val_accuracy"}
    assert a["history"]["val_accuracy"] == [(0, 0.7)]
    assert b["history"]["val_accuracy"] == [(0, 0.2)]  # pruned: its last reported value
    assert "val_accuracy" not in d["history"]  # failed: no objective
    assert {x["tags"]["search.kind"] for x in (a, b, c, d)} == {"trial"}
    assert record["parent"]["tags"]["search.kind"] == "search"
    assert a["params"] == {"optimizer.lr": "0.01", "model.width": "8"}
    assert "checkpoint" in c["artifacts"] and "checkpoint" not in a["artifacts"]
    assert a["tags"]["search.checkpoint"] == "deleted"
    assert "checkpoint" not in b["artifacts"] + d["artifacts"]
    assert record["parent"]["params"]["train.epochs"] == "3"
    assert "space.yaml" in record["parent"]["artifacts"]


def test_writes_go_straight_to_a_live_backend(tmp_path, sqlite_uri):
    uri = sqlite_uri
    writer = writer_for(uri, tmp_path / "spool.jsonl")
    play(tracker_for(writer), tmp_path)
    assert not writer.down and not (tmp_path / "spool.jsonl").exists()
    check_played(read_back(uri))


def test_a_dead_backend_spools_and_a_replay_is_idempotent(tmp_path, sqlite_uri):
    from tracking_helpers import free_port

    spool = tmp_path / "spool.jsonl"
    dead = writer_for(f"http://127.0.0.1:{free_port()}", spool)
    tracker = tracker_for(dead)
    play(tracker, tmp_path)
    assert dead.down and tracker.parent_id is None
    ops = Spool(spool).read()
    assert [op["op"] for op in ops[:2]] == ["run", "batch"] and len(ops) > 20
    assert dead.replay() == (0, len(ops))  # still dead: nothing lost, nothing applied
    assert len(Spool(spool).read()) == len(ops)

    saved = spool.read_text()
    uri = sqlite_uri  # `search sync --tracking-uri`: replay into another backend
    alive = writer_for(uri, spool)
    assert alive.down  # a spool left over goes first
    assert alive.replay() == (len(ops), 0)
    assert not spool.exists()
    first = read_back(uri)
    check_played(first)
    spool.write_text(saved)  # replayed again, as after a crash in the middle of a sync
    assert writer_for(uri, spool).replay() == (len(ops), 0)
    assert read_back(uri) == first


def test_refused_writes_are_dropped_not_spooled(tmp_path, sqlite_uri, caplog):
    writer = writer_for(sqlite_uri, tmp_path / "spool.jsonl")
    tracker = tracker_for(writer)
    tracker.start(params={"a": 1}, tags={})
    tracker.writer.write({"op": "batch", "key": "parent", "params": {"a": "2"}})
    assert len(writer.dropped) == 1 and "Changing param values" in writer.dropped[0][1]
    assert not writer.down and not (tmp_path / "spool.jsonl").exists()
    assert "skipped (retrying cannot help)" in caplog.text


@pytest.mark.parametrize("stopped, epochs, extra, state, reason", [
    (True, 2, {}, "PRUNED", "stopped by the scheduler after epoch 2 of 3"),
    (True, 3, {}, "COMPLETE", "finished after epoch 3 of 3"),  # ASHA stops at max_t
    (False, 2, {}, "COMPLETE", "stopped early after epoch 2 of 3"),  # early stopping
    (False, 1, {"fail_reason": "loss is nan at epoch 1"}, "FAILED", "loss is nan at epoch 1"),
])
def test_how_a_trial_ended(tmp_path, sqlite_uri, stopped, epochs, extra, state, reason):
    writer = writer_for(sqlite_uri, tmp_path / "spool.jsonl")
    tracker = tracker_for(writer)
    tracker.start(params={}, tags={})
    tracker.trial_started("t", {"train": {"epochs": 3}})
    for epoch in range(1, epochs + 1):
        last = epoch == epochs
        tracker.trial_result("t", {"epoch": epoch, "val_accuracy": 0.5, **(extra if last else {})},
                             stopping=stopped and last)
    rec = tracker.trial_ended("t")
    assert (rec.state, rec.reason) == (state, reason)
    assert read_back(writer.book.uri)["trial/t"]["tags"]["search.state"] == state


def test_a_resumed_trial_keeps_one_value_per_epoch(tmp_path, sqlite_uri):
    uri, spool = sqlite_uri, tmp_path / "spool.jsonl"
    first = tracker_for(writer_for(uri, spool))
    first.start(params={}, tags={})
    first.trial_started("t", {})
    for epoch in (1, 2):
        first.trial_result("t", {"epoch": epoch, "val_accuracy": 0.1 * epoch})
    # a new driver (resume): new writer and tracker, same search id; the trial restarts from
    # its epoch-1 checkpoint and reports epoch 2 again, then 3
    again = tracker_for(writer_for(uri, spool))
    again.start(params={}, tags={}, resume=True)
    again.trial_started("t", {})
    for epoch in (2, 3):
        again.trial_result("t", {"epoch": epoch, "val_accuracy": 0.5 + 0.1 * epoch})
    again.trial_ended("t")
    record = read_back(uri)
    assert set(record) == {"parent", "trial/t"}
    assert record["trial/t"]["history"]["epoch/val_accuracy"] == [(1, 0.1), (2, 0.2),
                                                                  (3, 0.8)]
    assert record["parent"]["status"] == "RUNNING"


def test_stage_children(tmp_path, sqlite_uri):
    uri = sqlite_uri
    tracker = tracker_for(writer_for(uri, tmp_path / "spool.jsonl"))
    parent = tracker.start(params={}, tags={})
    run_id = tracker.start_child("finetune", {"stage.mode": "full"})
    tracker.log_params("finetune", {"lr_scale": 0.1})
    tracker.log_metrics("finetune", {"val_accuracy": 0.97, "note": "x"}, step=1)
    tracker.end_child("finetune")
    from mlflow import MlflowClient

    run = MlflowClient(uri).get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["search.stage"] == "finetune" and run.data.tags["stage.mode"] == "full"
    assert run.data.metrics == {"val_accuracy": 0.97} and run.data.params == {"lr_scale": "0.1"}
    assert run.info.status == "FINISHED"
    assert tracker.start_child("finetune") == run_id  # the same stage reattaches


def test_optuna_link_params_and_state(tmp_path, sqlite_uri):
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s",
                                direction="maximize")
    trial = study.ask()
    trial.suggest_float("optimizer.lr", 1e-4, 1e-1, log=True)
    trial.set_user_attr("tune_trial_id", "tune_1")
    uri = sqlite_uri
    tracker = tracker_for(writer_for(uri, tmp_path / "spool.jsonl"), study=study,
                          config_from_params=lambda p: {"optimizer": {"lr": p["optimizer.lr"]},
                                                        "train": {"epochs": 3}})
    tracker.start(params={}, tags={})
    rec = tracker.trial_started("tune_1", {"params": dict(trial.params)})
    assert rec.number == 0 and rec.config["optimizer"]["lr"] == trial.params["optimizer.lr"]
    assert study.trials[0].user_attrs["mlflow_run_id"] == rec.run_id
    tracker.trial_result("tune_1", {"epoch": 1, "val_accuracy": 0.4})
    trial.report(0.4, 1)
    study.tell(trial, state=TrialState.PRUNED)  # the searcher tells before the callback hears
    assert tracker.trial_ended("tune_1").state == "PRUNED"
    child = read_back(uri)["trial/tune_1"]
    assert child["tags"]["optuna.trial_number"] == "0"
    assert child["params"] == {"optimizer.lr": repr(trial.params["optimizer.lr"])}
    assert "config.yaml" in child["artifacts"]


def test_spool_survives_a_partial_replay(tmp_path):
    spool = Spool(tmp_path / "s.jsonl")
    for i in range(3):
        spool.append({"op": "end", "key": f"trial/{i}", "status": "FINISHED"})
    spool.rewrite(spool.read()[1:])
    assert [op["key"] for op in spool.read()] == ["trial/1", "trial/2"]
    spool.rewrite([])
    assert not spool.path.exists() and len(spool) == 0
    shutil.rmtree(tmp_path / "ckpt", ignore_errors=True)


def test_sync_links_the_trials_recorded_during_an_outage(tmp_path, sqlite_uri):
    """Trials that began and ended while MLflow was away got no `mlflow_run_id`; the replay
    (`search sync`) writes it, on ended trials too."""
    import json
    from types import SimpleNamespace

    import optuna
    from optuna.trial import TrialState

    from search.tracking.factory import relink

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    (tmp_path / "run-1").mkdir()
    (tmp_path / "run-1" / "search_run.json").write_text(json.dumps(
        {"run_id": "run-1", "storage_url": storage, "study_name": "s"}))
    writer = writer_for(sqlite_uri, tmp_path / "spool.jsonl")
    tracker = tracker_for(writer, study=study)
    tracker.start(params={}, tags={})
    writer.go_down(ConnectionError("the server went away"))
    for tune_id in ("tune_1", "tune_2"):
        trial = study.ask()
        trial.set_user_attr("tune_trial_id", tune_id)
        tracker.trial_started(tune_id, {"params": {}})
        tracker.trial_result(tune_id, {"epoch": 1, "val_accuracy": 0.5})
        study.tell(trial, 0.5, state=TrialState.COMPLETE)
        tracker.trial_ended(tune_id)
    assert not any("mlflow_run_id" in t.user_attrs for t in study.trials)
    assert writer.replay()[1] == 0
    assert relink(tmp_path, SimpleNamespace(run_id="run-1"), writer) == 2
    runs = read_back(sqlite_uri)
    linked = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.user_attrs["mlflow_run_id"] for t in linked] == \
        [runs["trial/tune_1"]["id"], runs["trial/tune_2"]["id"]]
    assert relink(tmp_path, SimpleNamespace(run_id="run-1"), writer) == 0  # idempotent
