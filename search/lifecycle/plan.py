"""How a run's trials fit the cluster: how many run at once, how a GPU share spreads over the
GPUs, the epochs a budget caps.

The space's sections are already typed (spaces/section_types.py: `space.objectives`,
`space.budget`, `space.resources`, validated with their defaults by spaces); these pure functions
only size them against what the Ray cluster holds.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Mapping

from search.errors import UserError
# Metrics fit() reports after every epoch (a scheduler can prune on them) and those known only
# when a trial ends: facts of the metric table, shared with the space validator.
from spaces.capabilities import EPOCH_METRICS, FINAL_METRICS  # noqa: F401
# The space's typed sections that a run's plan carries (spaces/section_types.py)
from spaces.section_types import Budget, Objective, Resources  # noqa: F401


def node_slots(res: Resources, node: Mapping[str, float], gpu: float | None = None) -> int:
    """How many trials of `res` (with a GPU share of `gpu` instead, when given) fit on one node:
    a trial's bundle is placed on one node, never split across two."""
    share = res.gpu if gpu is None else gpu
    fits = [int(float(node.get("CPU", 0)) // res.cpu + 1e-9)] if res.cpu > 0 else []
    if share > 0:
        fits.append(int(float(node.get("GPU", 0)) // share + 1e-9))
    return min(fits)


def _describe(nodes: list[Mapping[str, float]]) -> str:
    return ", ".join(f"{float(n.get('CPU', 0)):g} CPU/{float(n.get('GPU', 0)):g} GPU"
                     for n in nodes)


def concurrency(res: Resources, cluster: Mapping[str, float],
                nodes: list[Mapping[str, float]] | None = None, seeds: int = 1) -> int:
    """How many trials can run at once: the space's max_concurrent, capped by what the cluster
    holds (node by node when `nodes`, the resources of each alive node, are given). A request
    the cluster can never satisfy is the user's mistake, said before Ray waits for it forever.
    A trial of several `seeds` holds `res` once per seed (its bundles may span nodes)."""
    if seeds > 1:
        each = concurrency(replace(res, max_concurrent=None), cluster, nodes)
        if each < seeds:
            raise UserError(f"budget.seeds: each trial trains {seeds} seeds at once, each with "
                            f"{res.cpu:g} CPUs and {res.gpu:g} GPUs, but the Ray cluster holds "
                            f"{each} such at a time; lower budget.seeds or resources")
        trials = each // seeds
        return max(1, min(trials, res.max_concurrent)) if res.max_concurrent else trials
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    if res.cpu > cpus:
        raise UserError(f"resources.cpu: each trial asks for {res.cpu:g} CPUs but the Ray "
                        f"cluster has {cpus:g}; lower resources.cpu")
    if res.gpu > gpus:
        raise UserError(f"resources.gpu: each trial asks for {res.gpu:g} GPUs but the Ray "
                        f"cluster has {gpus:g}; set resources.gpu: 0 to train on the CPU")
    if nodes:
        slots = sum(node_slots(res, n) for n in nodes)
        if slots == 0:
            raise UserError(f"resources: each trial asks for {res.cpu:g} CPUs and {res.gpu:g} "
                            "GPUs on one node, but no node of the Ray cluster has that much "
                            f"(nodes: {_describe(nodes)}); lower resources.cpu or .gpu")
    else:
        slots = node_slots(res, cluster)
    slots = max(1, slots)
    return max(1, min(slots, res.max_concurrent)) if res.max_concurrent else slots


def spread(res: Resources, nodes: list[Mapping[str, float]], running: int) -> Resources:
    """The trial's resources with its GPU share widened so that `running` trials give every GPU
    work before any GPU is shared (spread, then pack).

    Ray places a fractional GPU request best-fit: four 0.25-GPU trials on four GPUs all land on
    GPU 0. A share of 1/k leaves room for k trials per GPU, so asking for the largest share
    that still lets `running` trials run at once (k the fewest trials per GPU that hold them,
    node by node) gives each trial a GPU of its own while there are enough, and packs them
    evenly after that (k per GPU). The user's `gpu` stays the smallest share (the most trials
    a GPU may hold); the share a trial gets is also its cap of the GPU's memory."""
    if not 0 < res.gpu < 1 or not nodes or running < 1:
        return res
    whole = sum(int(float(n.get("GPU", 0)) + 1e-9) for n in nodes)
    if whole == 0:
        return res
    for k in range(max(1, math.ceil(running / whole)), int(1 / res.gpu + 1e-9) + 1):
        share = math.floor(1e4 / k) / 1e4  # Ray counts resources in 1e-4 units
        if share > res.gpu and sum(node_slots(res, n, share) for n in nodes) >= running:
            return replace(res, gpu=share)
    return res


def epochs_cap(config: dict, budget: Budget) -> dict:
    """The config with train.epochs capped by budget.max_epochs (a new dict)."""
    if budget.max_epochs is None:
        return config
    train = dict(config.get("train", {}))
    train["epochs"] = min(int(train.get("epochs", budget.max_epochs)), budget.max_epochs)
    return {**config, "train": train}

