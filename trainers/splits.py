"""Seeded, stratified index splits: train/val/test and k folds.

Pure functions of (labels, fractions, seed) returning index tensors, so that every trial of a study
sees the same split (`data.split_seed` is fixed across trials) and the test part never changes
with the objective mode. Every class is split in the same proportions, within one sample.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import TrainerError


def _class_orders(labels: Tensor, generator: torch.Generator) -> list[Tensor]:
    """The indices of each class (in class order), each shuffled by `generator`."""
    orders = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        orders.append(idx[torch.randperm(len(idx), generator=generator)])
    return orders


def _three_way(counts: list[int], val: float, test: float) -> list[tuple[int, int]]:
    """(test, val) counts per class such that every part (test, val, train) of every class is
    strictly within one sample of its exact share, and the totals stay close to exact.

    Per class, test and test+val are each rounded down or up (four candidates); a candidate
    whose three parts all lie within one is always among them (round both with one offset).
    Among those, the one keeping the running total errors of test and train smallest is taken.
    """
    out, err_t, err_tr = [], 0.0, 0.0
    for n in counts:
        et, ev = n * test, n * val
        etr = n - et - ev
        best: tuple | None = None
        for t in (math.floor(et), math.floor(et) + 1):
            for tv in (math.floor(et + ev), math.floor(et + ev) + 1):
                v, tr = tv - t, n - tv
                if min(t, v, tr) < 0:
                    continue
                worst = max(abs(t - et), abs(v - ev), abs(tr - etr))
                cost = (worst > 1 - 1e-9, (err_t + t - et) ** 2 + (err_tr + tr - etr) ** 2, worst)
                if best is None or cost < best[0]:
                    best = (cost, t, v, tr)
        assert best is not None  # (floor, floor) is always feasible
        _, t, v, tr = best
        err_t += t - et
        err_tr += tr - etr
        out.append((t, v))
    return out


def stratified_split(labels: Tensor, val_fraction: float, test_fraction: float,
                     seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(train, val, test) sorted index tensors: disjoint, together 0..N-1, each class split in
    the proportions (1 - val - test, val, test) within one sample, the same for the same seed."""
    labels = labels.detach().cpu().long()
    gen = torch.Generator().manual_seed(int(seed))
    orders = _class_orders(labels, gen)
    allocation = _three_way([len(o) for o in orders], val_fraction, test_fraction)
    parts: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    for order, (t, v) in zip(orders, allocation):
        parts[2].append(order[:t])
        parts[1].append(order[t:t + v])
        parts[0].append(order[t + v:])
    train, val, test = (torch.sort(torch.cat(p)).values if p else torch.empty(0, dtype=torch.long)
                        for p in parts)
    n = len(labels)
    for part, key, frac, what in ((val, "data.val_fraction", val_fraction, "validation"),
                                  (test, "data.test_fraction", test_fraction, "test"),
                                  (train, "data.val_fraction", val_fraction, "training")):
        if len(part) == 0 and not (what == "test" and frac == 0):  # 0: no test part asked
            raise TrainerError(f"{key}: {frac:g} of {n} samples leaves the {what} split empty; "
                               f"use more data or another fraction")
    return train, val, test


def stratified_folds(labels: Tensor, k: int, seed: int) -> list[Tensor]:
    """k disjoint sorted index tensors covering 0..N-1; every class is dealt round-robin over
    the folds (continuing across classes), so each class's count per fold and each fold's size
    are within one of N_c / k and N / k."""
    labels = labels.detach().cpu().long()
    if k < 2:
        raise TrainerError(f"data.kfold: k-fold cross-validation needs k >= 2, got {k}")
    if k > len(labels):
        raise TrainerError(f"data.kfold: {k} folds need at least {k} samples in train + val, "
                           f"got {len(labels)}; use a smaller k")
    gen = torch.Generator().manual_seed(int(seed))
    dealt = torch.cat(_class_orders(labels, gen))
    fold_of = torch.arange(len(dealt)) % k
    return [torch.sort(dealt[fold_of == i]).values for i in range(k)]
