"""The live view and log lines, the target stopper, and the exit codes (no Ray needed)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from search.lifecycle.plan import Objective
from search.tune.progress import Progress, TargetStopper, outcome
from search.lifecycle.runner import Outcome

ACC = Objective("val_accuracy", "maximize")


@dataclass
class FakeTrial:  # the attributes of ray.tune.experiment.Trial that the callback reads
    trial_id: str
    status: str = "RUNNING"
    last_result: dict = field(default_factory=dict)
    error_file: str | None = None


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def finished(value):
    return {"trial_finished": True, "final_val_accuracy": value, "test_accuracy": value - 0.01,
            "training_iteration": 3}


def test_outcome_of_tune_trials():
    assert outcome(FakeTrial("a", "TERMINATED", finished(0.9))) == "COMPLETE"
    assert outcome(FakeTrial("a", "TERMINATED", {"training_iteration": 1})) == "PRUNED"
    assert outcome(FakeTrial("a", "TERMINATED", {"fail_reason": "x"})) == "FAIL"
    assert outcome(FakeTrial("a", "ERROR")) == "FAIL"
    assert outcome(FakeTrial("a", "PENDING")) == "PENDING"
    assert outcome(FakeTrial("a", "RUNNING", finished(0.9)), ended=True) == "COMPLETE"


def test_log_lines_when_not_a_terminal():
    out = io.StringIO()
    p = Progress(3, ACC, stream=out, label={"a": 0, "b": 1, "c": 2}.get)
    a, b, c = FakeTrial("a", last_result=finished(0.91)), FakeTrial("b"), FakeTrial("c")
    b.last_result = {"training_iteration": 2, "val_accuracy": 0.5}
    c.last_result = {"fail_reason": "DivergedError: training diverged in epoch 1"}
    trials = [a, b, c]
    p.on_step_end(1, trials)
    assert out.getvalue() == ""  # no redrawing line off a terminal
    p.on_trial_complete(1, trials, a)
    p.on_trial_complete(1, trials, b)
    p.on_trial_complete(1, trials, c)
    lines = out.getvalue().splitlines()
    assert "trial #0 COMPLETE val_accuracy=0.9100 test_accuracy=0.9000" in lines[0]
    assert "trial #1 PRUNED stopped at epoch 2" in lines[1]
    assert "trial #2 FAIL DivergedError: training diverged" in lines[2]
    assert "3/3 done: 1 complete, 1 pruned, 1 failed" in lines[2]
    assert "best val_accuracy 0.9100 (#0)" in lines[2]


def test_live_line_on_a_terminal(tmp_path):
    out = Tty()
    p = Progress(4, ACC, time_limit=600, stream=out, experiment_dir=str(tmp_path))
    t = FakeTrial("x", "RUNNING")
    p.on_step_end(1, [t, FakeTrial("y", "PENDING")])
    assert out.getvalue().startswith("\r\x1b[K0/4 done") and "1 running" in out.getvalue()
    Path(tmp_path, "trial_x").mkdir()
    Path(tmp_path, "trial_x", "fail_reason.txt").write_text("RuntimeError: boom\n")
    t.error_file = "/tmp/ray/session_1/artifacts/run-1/driver_artifacts/trial_x/error.txt"
    p.on_trial_error(2, [t], t)
    assert "trial x FAIL RuntimeError: boom" in out.getvalue()
    # the traceback's copy in the run folder, not Ray's staging path under /tmp/ray
    assert f"(traceback: {tmp_path / 'trial_x' / 'error.txt'})" in out.getvalue()
    assert "left" in p.line()  # a time limit gives a remaining time


def test_target_stops_on_a_finished_trial_only():
    stop = TargetStopper(ACC, 0.95)
    assert not stop("a", {"val_accuracy": 0.99, "training_iteration": 1}) and not stop.stop_all()
    assert stop("b", finished(0.96)) and stop.stop_all()
    low = TargetStopper(Objective("val_loss", "minimize"), 0.1)
    assert low("c", {"trial_finished": True, "final_val_loss": 0.2}) and not low.stop_all()
    assert low("d", {"trial_finished": True, "final_val_loss": 0.05}) and low.stop_all()


def test_a_trials_last_report_ends_it_before_a_scheduler_can_pause_it():
    """Synchronous PBT pauses every report; a paused last report was resumed forever."""
    stop = TargetStopper(ACC)
    assert not stop("a", {"val_accuracy": 0.5, "training_iteration": 3})
    assert stop("a", finished(0.5)) and not stop.stop_all()
    assert stop("b", {"fail_reason": "DivergedError: nan", "training_iteration": 2})


def test_exit_codes():
    base = dict(run_id="r", experiment_dir=Path("."), study_name="s", storage_url="u")
    assert Outcome(**base, counts={"COMPLETE": 1, "FAIL": 3}).exit_code == 0
    assert Outcome(**base, counts={"FAIL": 3}).exit_code == 1
    assert Outcome(**base, counts={"COMPLETE": 1}, interrupted=True).exit_code == 130


def test_a_nan_objective_is_a_fail_on_the_console_as_in_the_study():
    import optuna

    from search.tune.searcher import conclude

    study = optuna.create_study(direction="maximize")
    study.ask()
    assert conclude(study, 0, [ACC], finished(float("nan"))) == "FAIL"
    assert study.trials[0].state.name == "FAIL"
    out = io.StringIO()
    p = Progress(1, ACC, stream=out, label={"n": 0}.get, objectives=[ACC])
    trial = FakeTrial("n", last_result=finished(float("nan")))
    p.on_trial_complete(1, [trial], trial)
    line = out.getvalue()
    assert "trial #0 FAIL objective val_accuracy is nan at the selected epoch" in line, line
    assert "1/1 done: 0 complete, 0 pruned, 1 failed" in line and "best -" in line
    assert outcome(FakeTrial("n", "TERMINATED", finished(float("inf"))), objectives=[ACC]) \
        == "FAIL"


def test_time_left_comes_from_epochs_before_any_trial_ends():
    """Two trials at epoch 5 of 10 after 100 s, two more to start: 30 epochs left at 0.1
    epoch/s is 300 s, though no trial has finished (a trials-based ETA would say nothing)."""
    import time

    p = Progress(4, ACC, epochs=10, stream=Tty())  # live: the first step draws (and counts)
    trials = [FakeTrial("a", last_result={"training_iteration": 5}),
              FakeTrial("b", last_result={"training_iteration": 5})]
    p.on_step_end(1, trials)
    p.first_started = time.monotonic() - 100
    assert "0/4 done" in p.line() and "~05:00 left" in p.line(), p.line()


def test_time_left_counts_ended_trials_epochs_but_not_their_rest():
    from search.tune.progress import time_left

    done = FakeTrial("a", "TERMINATED", {"training_iteration": 2})  # pruned at epoch 2 of 10
    run = FakeTrial("b", last_result={"training_iteration": 4})
    # 6 epochs in 60 s; left: b's 6, a none (it ended), one trial not started: 10
    assert time_left([done, run], 3, 10, {"a"}, 60.0) == pytest.approx(160.0)
    assert time_left([FakeTrial("c")], 3, 10, set(), 60.0) is None  # no epoch yet


def test_a_heartbeat_says_what_the_running_trials_are_at():
    out = io.StringIO()
    p = Progress(3, ACC, stream=out, label={"a": 0, "b": 1}.get, epochs=10, heartbeat=3600)
    trials = [FakeTrial("a", last_result={"training_iteration": 2, "val_accuracy": 0.8123}),
              FakeTrial("b", "PENDING")]
    p.on_step_end(1, trials)
    assert out.getvalue() == ""  # within the heartbeat: quiet
    p.heartbeat = 0.0
    p.on_step_end(2, trials)
    line = out.getvalue()
    assert "running: #0 epoch 2/10 val_accuracy 0.8123" in line, line
    assert "0/3 done" in line and "1 running" in line
    live = Progress(3, ACC, stream=Tty(), epochs=10, heartbeat=0.0)
    live.on_step_end(1, trials)
    assert "running:" not in live.out.getvalue()  # the live line is the heartbeat there
