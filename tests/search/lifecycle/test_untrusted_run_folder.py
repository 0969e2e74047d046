"""A run folder handed over by someone else runs no code: payload pickles planted at every path a
run folder held pickles (space.pkl, the searcher state, Tune's tuner.pkl, any *.pkl) are never
unpickled by `search best`, `status`, `stages` or `resume` (real Ray, real SQLite)."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
from optuna.trial import TrialState

from search.studies import study as studies
from search.cli import main
from search.lifecycle.runner import resume_search, run_search
from search.lifecycle.runs import RUN_FILE, read_run_file, runs_of
from search.testing import toy_space
from untrusted import no_loads_from, plant

pytestmark = pytest.mark.slow


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_no_command_unpickles_a_run_folder(ray_cluster, options, tmp_path, monkeypatch):
    out, marker = tmp_path / "out", tmp_path / "pwned"
    space = toy_space(name="trust", trials=2, epochs=2, sampler_name="random")
    run_search(space, options())
    (run,) = runs_of(out)
    assert not list(out.rglob("space.pkl"))  # the record is text now
    assert (run / "space.yaml").is_file()
    states = list(run.glob("searcher-state-*.pkl"))
    assert states and all(json.loads(p.read_text())["run_id"] == run.name for p in states)
    planted = plant(out, marker)
    assert len(planted) >= 3
    # the driver died mid-run as far as the folder tells
    (run / RUN_FILE).write_text(json.dumps({**read_run_file(run), "state": "running",
                                            "pid": 99_999_999}))
    with no_loads_from(out, monkeypatch) as seen:
        code, text, err = cli("status", str(out))
        assert code == 0 and "`search resume` continues it" in text, err
        code, text, err = cli("best", str(out))
        assert code == 0 and "optimizer" in text, err
        code, _, err = cli("stages", str(out))
        assert code == 2 and "no enabled stages" in err
        outcome = resume_search(out, options())
        assert outcome.exit_code == 0 and outcome.counts["COMPLETE"] == 2
    assert not seen and not marker.exists()
    study = studies.load_study(studies.open_storage(f"sqlite:///{out}/study.db"), "trust")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
