"""The Pareto rule of the multi-objective pruners (search/tune/pareto.py): ranks, the tie-breaks,
the share of a rung kept, and the hypervolume the benchmarks score with."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from search.tune.pareto import crowding, dominates, hypervolume_2d, kept, minimised, order, ranks


def test_minimised_turns_maximised_objectives_around():
    assert minimised([0.9, 1000], ["max", "min"]) == (-0.9, 1000.0)


def test_dominance_and_ranks():
    assert dominates((1, 1), (1, 2)) and not dominates((1, 1), (1, 1))
    assert not dominates((0, 2), (1, 1)) and not dominates((1, 1), (0, 2))
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (4, 4), (6, 6), (math.nan, 0)]
    assert ranks(points) == [0, 0, 0, 1, 2, 3, 4]  # the NaN point after every finite one


def test_hypervolume_2d_is_the_dominated_area():
    assert hypervolume_2d([(1, 3), (2, 2), (3, 1)], (4, 4)) == 3 + 2 + 1
    assert hypervolume_2d([(1, 3), (2, 2), (3, 1), (3, 3)], (4, 4)) == 6  # dominated: adds 0
    assert hypervolume_2d([(5, 0)], (4, 4)) == 0  # outside the reference box


def test_crowding_puts_the_ends_first():
    d = crowding([(0, 0, 4), (1, 1, 3), (2, 2, 1), (4, 4, 0)])
    assert d[0] == d[3] == math.inf and 0 < d[1] and 0 < d[2]


def test_order_is_rank_then_crowding():
    # the front's ends first, then its middle by the gaps to the neighbours (1.25 > 0.975),
    # then the dominated point
    points = [(5, 5), (1, 2), (4, 0), (1.5, 1.6), (0, 4)]
    assert order(points) == [2, 4, 3, 1, 0]


def test_the_first_at_a_rung_goes_on_and_ties_go_to_the_newcomer():
    assert kept([(3.0, 3.0)], 0, 1 / 3)
    assert kept([(1.0, 1.0), (1.0, 1.0)], 0, 0.5) and kept([(1.0, 1.0), (1.0, 1.0)], 1, 0.5)


def test_a_smaller_model_goes_on_where_accuracy_alone_would_stop_it():
    # accuracy 0.45 with 10 weights against 0.50 with 1,000: both ends of the front
    recorded, newcomer = minimised([0.50, 1000], ["max", "min"]), minimised([0.45, 10],
                                                                           ["max", "min"])
    assert kept([newcomer, recorded], 0, 0.5)
    assert not kept([newcomer[:1], recorded[:1]], 0, 0.5)  # one objective: stopped


def test_a_diverged_point_is_never_kept_among_finite_ones():
    assert not kept([(math.inf, 1.0), (5.0, 5.0), (6.0, 6.0)], 0, 0.9)


POINTS = st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10)), min_size=1, max_size=12)


def test_equal_points_share_one_crowding_distance():
    """Four copies beside two ends: each copy, judged, ties the others and goes on (a copy's
    distance once hung on where the sort put it, and every copy judged lost to a twin)."""
    points = [(0.0, 1.0)] * 4 + [(1.0, 0.0), (-1.0, 3.0)]
    assert len(set(crowding(points)[:4])) == 1
    assert all(kept(points, i, 0.5) for i in range(4))


@settings(max_examples=60, deadline=None)
@given(POINTS, st.sampled_from([1 / 2, 1 / 3, 1 / 4]))
def test_at_least_the_top_share_goes_on(points, fraction):
    """Judged each in turn, at least max(1, floor(n * fraction)) points go on (more only
    through ties, which go to the one judged); a point that dominates every other goes on, a
    point every other dominates does not."""
    n = len(points)
    going = [kept(points, i, fraction) for i in range(n)]
    assert sum(going) >= max(1, math.floor(n * fraction))
    for i, p in enumerate(points):
        others = [q for j, q in enumerate(points) if j != i]
        if others and all(dominates(p, q) for q in others):
            assert going[i]
        if others and all(dominates(q, p) for q in others):
            assert not going[i]
