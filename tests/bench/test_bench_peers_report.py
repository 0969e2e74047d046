"""bench/bench_peers.py's arithmetic on made-up runs (no search runs: milliseconds): the target
it picks, the time and epochs to it, and the verdict lines BENCHMARKS.md copies."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_peers as peers  # noqa: E402


def row(arm, seed, events, finals, rc=0):
    return {"arm": arm, "seed": seed, "rc": rc, "wall_s": events[-1][0] + 5,
            "events": events, "finals": finals}


def test_time_and_epochs_count_every_trial_until_the_first_epoch_at_the_target():
    r = row("search", 0, [[10.0, 0.5], [11.0, 0.8], [12.0, 0.92], [13.0, 0.95]], [])
    assert peers.to_target(r, 0.9) == (12.0, 3)
    assert peers.to_target(r, 0.95) == (13.0, 4)
    assert peers.to_target(r, 0.96) == (math.inf, math.inf)


def test_best_at_end_is_the_best_finished_trial_and_its_test_accuracy_first_of_ties():
    r = row("search", 0, [[1.0, 0.9]], [[5.0, 0.90, 0.91], [6.0, 0.95, 0.93], [7.0, 0.95, 0.99]])
    assert peers.best_at_end(r) == (0.95, 0.93)
    assert peers.best_at_end(row("search", 0, [[1.0, 0.9]], [])) is None


def test_the_automatic_target_is_reached_by_every_arm_in_most_of_its_runs():
    rows = [row("search", s, [[1.0, v]], []) for s, v in enumerate((0.95, 0.96, 0.90))]
    rows += [row("optuna", s, [[1.0, v]], []) for s, v in enumerate((0.94, 0.97, 0.97))]
    # 0.950 is reached by 2 of 3 runs of both arms; 0.952 by 1 of 3 of search's
    assert peers.auto_target(rows, ["search", "optuna"]) == pytest.approx(0.95)


def test_the_verdict_compares_with_the_fastest_peer_and_the_most_accurate_one():
    rows = []
    for s in range(3):
        rows.append(row("search", s, [[8.0, 0.5], [10.0, 0.95]], [[20.0, 0.95, 0.94]]))
        rows.append(row("optuna", s, [[20.0, 0.95]], [[30.0, 0.96, 0.95]]))
        rows.append(row("tune_tpe", s, [[16.0, 0.95]], [[30.0, 0.94, 0.93]]))
    text = peers.report(rows, list(peers.ARMS), 0.95)
    assert "vs the fastest peer (tune_tpe) 16.0 s = 0.62 x (target <= 0.8): met" in text
    assert "vs the best peer (optuna) 0.9600: +1.00 points behind (negative: ahead; target " \
        "<= 0.2): MISSED" in text
    assert "tune_random" not in text  # an arm without runs is left out
