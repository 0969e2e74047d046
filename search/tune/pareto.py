"""Pareto ranking for several objectives: the rule the multi-objective pruners apply at a rung,
and the hypervolume the benchmarks score fronts with. Pure functions over points (tuples of
floats, every objective turned into one to minimise), no Ray, no Optuna.

The order of a set of points, best first: by non-domination rank (0 = not dominated by any
point of the set, 1 = dominated only by rank-0 points, ...), then inside a rank by crowding
distance (NSGA-II's: the ends of each objective first, then the points with the widest gaps
to their neighbours). A point with a value that is not finite (a diverged trial) comes after
every other. Crowding, not the exclusive hypervolume contribution, breaks the ties: on the
benchmark matrix's learning-curve problem with two objectives (bench/bench_matrix.py,
lc_mo, 20 seeds) ASHA ended with a median hypervolume regret of 0.43 with crowding and 0.65
with contributions, whose ends depend on a reference point beyond the worst trials of the
rung: the smallest and the largest models got the largest shares whatever their accuracy.
"""
from __future__ import annotations

import math
from typing import Sequence

Point = Sequence[float]


def minimised(values: Sequence[float], modes: Sequence[str]) -> tuple[float, ...]:
    """`values` with each "max" objective negated, so that smaller is better everywhere."""
    return tuple(-float(v) if m == "max" else float(v) for v, m in zip(values, modes))


def finite(p: Point) -> bool:
    return all(math.isfinite(v) for v in p)


def dominates(a: Point, b: Point) -> bool:
    """a is no worse than b in every objective and better in one (minimising)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def ranks(points: Sequence[Point]) -> list[int]:
    """Non-domination rank of each point (0 = the front); non-finite points rank last."""
    n = len(points)
    out = [-1] * n
    left = [i for i in range(n) if finite(points[i])]
    rank = 0
    while left:
        front = [i for i in left if not any(dominates(points[j], points[i]) for j in left)]
        for i in front:
            out[i] = rank
        left = [i for i in left if out[i] < 0]
        rank += 1
    return [rank if r < 0 else r for r in out]


def hypervolume_2d(points: Sequence[Point], ref: Point) -> float:
    """The area dominated by `points` (two objectives, minimising) and bounded by `ref`."""
    inside = sorted((p[0], p[1]) for p in points if finite(p) and p[0] < ref[0] and p[1] < ref[1])
    area, best_y = 0.0, ref[1]
    for x, y in inside:  # ascending x: each point adds the strip below the best y so far
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area


def crowding(front: Sequence[Point]) -> list[float]:
    """NSGA-II's crowding distance of each point within `front`: the ends of every objective
    infinite, the others the sum over objectives of the normalised gap between neighbours.
    Equal points get one distance, that of their value: computed per position, a copy sorted
    next to a neighbour would outrank its twin, and the tie would not go to the one judged."""
    unique = list(dict.fromkeys(tuple(p) for p in front))
    if len(unique) < len(front):
        shared = dict(zip(unique, crowding(unique)))
        return [shared[tuple(p)] for p in front]
    n = len(front)
    out = [0.0] * n
    if n == 0:
        return out
    for k in range(len(front[0])):
        order = sorted(range(n), key=lambda i: front[i][k])
        low, high = front[order[0]][k], front[order[-1]][k]
        out[order[0]] = out[order[-1]] = math.inf
        if high == low:
            continue
        for pos in range(1, n - 1):
            gap = front[order[pos + 1]][k] - front[order[pos - 1]][k]
            out[order[pos]] += gap / (high - low)
    return out


def order(points: Sequence[Point]) -> list[int]:
    """Indices of `points` best first (see the module docstring); equal points keep their
    given order."""
    rank = ranks(points)
    share = [0.0] * len(points)
    usable = [i for i in range(len(points)) if finite(points[i])]
    for r in set(rank[i] for i in usable):  # with one objective the rank orders by value
        members = [i for i in usable if rank[i] == r]
        for i, v in zip(members, crowding([points[i] for i in members])):
            share[i] = v
    return sorted(range(len(points)), key=lambda i: (rank[i], -share[i], i))


def kept(points: Sequence[Point], index: int, fraction: float) -> bool:
    """Whether `points[index]` is among the best `fraction` of `points` (at least one point is
    kept: the first trial to reach a rung always goes on). A tie goes to `points[index]`."""
    n = len(points)
    if n <= 1:
        return True
    keep = max(1, int(math.floor(n * fraction + 1e-9)))
    # The candidate first: among points equal to it in rank and share, it wins the tie.
    moved = [points[index]] + [p for i, p in enumerate(points) if i != index]
    return order(moved).index(0) < keep
