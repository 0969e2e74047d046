"""Chaos in CI: the `search run` driver killed with SIGKILL before Tune's first save, at a
random moment of the search and inside each stage, `search resume` after each kill until the
run and its stages are done: no trial lost or run twice, MLflow matching the study (one child
run per trial, same state, none left RUNNING), every stage finished (bench/chaos.py; seeded)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[3] / "bench"))
import chaos  # noqa: E402

pytestmark = pytest.mark.slow


def test_kills_at_every_stage_of_a_run_lose_and_repeat_nothing(tmp_path):
    r = chaos.one_round(tmp_path, seed=13, trials=4, epochs=2)
    assert not r.problems, r.problems
    assert [k.split(" +")[0] for k in r.kills] == ["run file", "search", "stage 0-best",
                                                   "stage 1-finetune", "stage 2-quantize"]
    assert r.trials == 4 and r.lost == 0 and r.duplicated == 0
