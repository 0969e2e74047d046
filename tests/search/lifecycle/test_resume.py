"""kill -9 of a running `search run` driver, then `search resume` (real Ray, real SQLite)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.studies import study as studies
from search.lifecycle.runner import RunOptions, resume_search
from search.lifecycle.runs import read_run_file, runs_of

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).parents[1] / "_driver.py"


def completed(db: Path) -> int:
    # Read-only: opening the study through Optuna here would create its schema too, racing the
    # driver that is creating it ("table ... already exists").
    if not db.is_file():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            (n,) = conn.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()
    except sqlite3.OperationalError:  # no schema yet, or locked for a moment
        return 0
    return n


def stop_driver(tmp_path: Path, sig: int) -> int:
    """Start the driver, send it `sig` once 2 trials completed; its exit status. After a
    SIGKILL, no process the driver had started (its local Ray) may stay alive."""
    from search.cluster.reaper import descendants

    out, log = tmp_path / "out", tmp_path / "fit.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
    err = (tmp_path / "driver.err").open("w")
    proc = subprocess.Popen([sys.executable, str(DRIVER), str(out), str(log)], env=env,
                            stdout=err, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while completed(out / "study.db") < 2:
            assert proc.poll() is None, (tmp_path / "driver.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial completed in time"
            time.sleep(0.2)
        ours = descendants(proc.pid)
        assert ours, "the driver runs a local Ray of its own"
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=120)
        if sig == signal.SIGKILL:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and alive(ours):
                time.sleep(0.25)
            assert not alive(ours), f"left running after kill -9: {alive(ours)}"
        return code
    finally:
        try:  # the Ray processes the driver had started (a killed driver leaves some)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def alive(pids: dict[int, int]) -> list[str]:
    """The command lines of those processes still alive (same pid and start time)."""
    from search.cluster.reaper import stat_of, zombie

    left = []
    for pid, start in pids.items():
        if (stat_of(pid) or (0, -1))[1] == start and not zombie(pid):
            try:
                left.append(Path(f"/proc/{pid}/cmdline").read_bytes()[:80].decode(errors="replace"))
            except OSError:
                continue
    return left


def test_ctrl_c_exits_130_and_resume_finishes_the_run(ray_cluster, tmp_path):
    assert stop_driver(tmp_path, signal.SIGINT) == 130
    (run_dir,) = runs_of(tmp_path / "out")
    assert read_run_file(run_dir)["state"] == "interrupted"
    outcome = resume_search(tmp_path / "out", RunOptions(live=False), stream=sys.stderr)
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{tmp_path}/out/study.db")
    trials = studies.of_run(study.trials, outcome.run_id)
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert outcome.exit_code == 0


def test_resume_after_kill_9(ray_cluster, tmp_path):
    out, log = tmp_path / "out", tmp_path / "fit.log"
    assert stop_driver(tmp_path, signal.SIGKILL) == -signal.SIGKILL
    storage = studies.open_storage(f"sqlite:///{out / 'study.db'}")
    before = {t.number: t for t in optuna.load_study(study_name="killed",
                                                      storage=storage).trials}
    done_before = {t.params["optimizer.lr"] for t in before.values()
                   if t.state == TrialState.COMPLETE}
    assert len(done_before) >= 2
    assert any(t.state == TrialState.RUNNING for t in before.values())
    (run_dir,) = runs_of(out)
    assert read_run_file(run_dir)["state"] == "running"  # the dead driver could not say more

    outcome = resume_search(out, RunOptions(live=False), stream=sys.stderr)
    study = optuna.load_study(study_name="killed", storage=storage)
    trials = studies.of_run(study.trials, outcome.run_id)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len(trials) == 8 and outcome.exit_code == 0 and not outcome.interrupted
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.number for t in trials}) == 8
    # no pruner: each trial reported only at its end (its epochs held), and a trial the kill
    # cut between reports trained again from its last one: every curve is whole
    assert all(sorted(t.intermediate_values) == [1, 2, 3, 4] for t in trials)
    tune_ids = [t.user_attrs["tune_trial_id"] for t in trials]
    assert len(set(tune_ids)) == 8 and all(tune_ids)
    starts = Counter(json.loads(line)["lr"] for line in log.read_text().splitlines())
    for lr in done_before:  # finished before the kill: never trained again
        assert starts[lr] == 1
    for t in trials:  # a trial finished before the kill keeps its result
        if t.number in before and before[t.number].state == TrialState.COMPLETE:
            assert t.value == before[t.number].value
    info = read_run_file(run_dir)
    assert info["state"] == "finished"
    running_before = sum(t.state == TrialState.RUNNING for t in before.values())
    assert sum(info["settled"].values()) == running_before
