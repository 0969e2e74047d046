"""`search status` and `search resume` agree on what is left of a run: status tells the user to
resume exactly when resume has something to do (the search, or only its stages)."""
from __future__ import annotations

import contextlib
import io
import json
import os

import optuna
import pytest

from search.cli import main
from search.errors import UserError
from search.lifecycle.runs import RUN_FILE, find_run, unfinished

ALIVE = {"pid": os.getpid()}  # this process: a driver still running
DEAD = {"pid": 99_999_999}  # no such process

CASES = [  # (run file fields, what is left)
    ({"state": "running", **DEAD}, "search"),           # kill -9 before or during the search
    ({"state": "interrupted", **DEAD}, "search"),       # Ctrl-C
    ({"state": "running", **ALIVE}, "alive"),
    ({"state": "finished", "stages": "pending", **DEAD}, "stages"),  # killed before the stages
    ({"state": "finished", "stages": "running", **DEAD}, "stages"),  # killed in a stage
    ({"state": "finished", "stages": "running", **ALIVE}, "alive"),
    ({"state": "finished", "stages": "done", **DEAD}, None),
    ({"state": "finished", "stages": "skipped", **DEAD}, None),
    ({"state": "finished", "stages": "failed", **DEAD}, None),
    ({"state": "finished", "stages": None, **DEAD}, None),
]


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("agree") / "study.db"
    study = optuna.create_study(study_name="agree", storage=f"sqlite:///{db}")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    return db


@pytest.mark.parametrize("fields,left", CASES)
def test_status_says_resume_exactly_when_resume_would(study_db, tmp_path, fields, left):
    out = tmp_path / "out"
    run = out / "run-20261206-000000-abcdef"
    run.mkdir(parents=True)
    (out / "study.db").symlink_to(study_db)
    import socket

    info = {"run_id": run.name, "space_name": "agree", "study_name": "agree",
            "storage_url": f"sqlite:///{out / 'study.db'}", "host": socket.gethostname(),
            **fields}
    (run / RUN_FILE).write_text(json.dumps(info))
    assert unfinished(info) == left
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert main(["status", str(out)]) == 0
    says_resume = "`search resume` continues it" in text.getvalue()
    try:
        find_run(out)
        resumable = True
    except UserError as err:
        resumable = False
        assert ("still running" in str(err)) == (left == "alive")
    assert says_resume == resumable == (left in ("search", "stages")), text.getvalue()
