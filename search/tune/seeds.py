"""Repeated seeds (`budget.seeds: K > 1`): a trial trains its config K times at once, each
training a Ray actor of its own (the trial's resources each) in one of the K bundles of the
trial's placement group, and reports their mean to Tune.

Seed i trains with `train.seed` = the trial's seed + i (seed 0 is the seed one training would
have had). Each epoch, the trial waits for every seed's report of it and sends one report: every
metric the seeds share as their mean; each objective as mean - c*std toward worse (mean + c*std
when minimised; c = `budget.seed_penalty`, 0 by default), its sample std as `<metric>_std` (and
the plain mean as `<metric>_mean` when c > 0); and each seed's own values as `seed-<s>/<key>`,
which tracking logs to the seed's own MLflow run. Schedulers, the study and the live view read
the objective key, so they decide on the mean. A seed that ended early (the trainer's own early
stopping) keeps its last values in the mean.

Checkpoints: seed 0's files lie at the top of the trial's checkpoint (what the registry, the
stages and `search best` read: the trial's model is seed 0's), seed s's in `seed-<s>/`; a
trial that is resumed (a pause, a retry, `search resume`, `--extend`) resumes every seed from
its own files. When Tune stops the trial its report raises, and the seeds' actors are killed;
a seed that fails fails the trial with its error.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

from search.lifecycle.plan import Objective
from search.studies import study as studies
from search.tune.keys import FINAL_PREFIX, FINISHED_KEY
from search.tune.outcome import clean
from search.tune.seedrun import DONE, EPOCH, SeedRun

SEED_PREFIX = "seed-"  # seed-<s>/<key>: one seed's value in the trial's result
SEEDS_KEY = studies.SEEDS  # the trial's seeds, in its last result and as a study user attr


class SeedFailed(Exception):
    """A seed's training failed: `kind` says how (OOM, KNOWN: no retry; ERROR: Tune retries)."""

    def __init__(self, kind: str, seed: int, line: str):
        super().__init__(f"seed {seed}: {line}")
        self.kind = kind


def seeds_of(settings: dict, k: int) -> list[int]:
    """The K seeds of a trial: its own `train.seed` and the next K-1."""
    base = (settings.get("train") or {}).get("seed") or 0
    return [int(base) + i for i in range(k)]


def with_seed(settings: dict, seed: int) -> dict:
    return {**settings, "train": {**(settings.get("train") or {}), "seed": seed}}


def seed_key(seed: int, key: str) -> str:
    return f"{SEED_PREFIX}{seed}/{key}"


def folder_of(work: Path, seeds: Sequence[int], i: int) -> Path:
    """Where seed i's checkpoint files lie in the trial's checkpoint (seed 0 at the top)."""
    return work if i == 0 else work / f"{SEED_PREFIX}{seeds[i]}"


def penalized(mean: float, std: float, objective: Objective, c: float) -> float:
    """The objective over the seeds: the mean moved c standard deviations toward worse."""
    return mean - c * std if objective.mode == "max" else mean + c * std


def _numbers(row: dict) -> dict[str, float]:
    return {k: v for k, v in row.items() if isinstance(v, (int, float))
            and not isinstance(v, bool)}


def _spread(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if not all(math.isfinite(v) for v in values):
        return mean, math.nan
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(rows: Sequence[dict], seeds: Sequence[int], objectives: Sequence[Objective],
              penalty: float) -> dict:
    """One epoch's report from the seeds' reports of it (see the module docstring)."""
    numbers = [_numbers(r) for r in rows]
    shared = [k for k in numbers[0] if all(k in n for n in numbers[1:])]
    out: dict[str, Any] = {k: sum(n[k] for n in numbers) / len(numbers) for k in shared}
    out["epoch"] = max(int(r["epoch"]) for r in rows)
    for o in objectives:
        if o.metric in shared:
            mean, std = _spread([n[o.metric] for n in numbers])
            out[o.metric] = penalized(mean, std, o, penalty)
            out[o.metric + "_std"] = std
            if penalty:
                out[o.metric + "_mean"] = mean
    for seed, n in zip(seeds, numbers):
        out.update({seed_key(seed, k): v for k, v in n.items()})
    return out


def final(finals: Sequence[dict], seeds: Sequence[int], objectives: Sequence[Objective],
          penalty: float) -> dict:
    """The trial's last-result fields from each seed's (final_fields and device fields): the
    objectives at the seeds' selected epochs over the seeds, mean test accuracy; the rest
    (selected epoch, epochs run, split, device) is seed 0's, whose model the trial keeps."""
    out = {k: v for k, v in finals[0].items()
           if not k.startswith(FINAL_PREFIX) and not k.startswith("fold")}
    out[FINISHED_KEY] = True
    out[SEEDS_KEY] = list(seeds)
    tests = [f.get(studies.TEST_ACCURACY) for f in finals]
    if all(isinstance(t, (int, float)) for t in tests):
        out[studies.TEST_ACCURACY] = sum(tests) / len(tests)
    peaks = [f["gpu_peak_mb"] for f in finals if isinstance(f.get("gpu_peak_mb"), (int, float))]
    if peaks:
        out["gpu_peak_mb"] = max(peaks)
    for o in objectives:
        values = [f.get(FINAL_PREFIX + o.metric) for f in finals]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[FINAL_PREFIX + o.metric] = None  # the study tells it FAIL with the reason
            continue
        mean, std = _spread([float(v) for v in values])
        out[FINAL_PREFIX + o.metric] = penalized(mean, std, o, penalty)
        out[FINAL_PREFIX + o.metric + "_std"] = std
        out[o.metric + "_seeds"] = [float(v) for v in values]
        if penalty:
            out[FINAL_PREFIX + o.metric + "_mean"] = mean
        if o.metric == "latency_ms":
            out["latency_ms"] = out[FINAL_PREFIX + o.metric]
    for seed, f in zip(seeds, finals):
        out.update({seed_key(seed, k): v for k, v in _numbers(f).items()
                    if k.startswith(FINAL_PREFIX) or k in (studies.TEST_ACCURACY,
                                                           "selected_epoch")})
    return out


def _restore_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} \
        if folder.is_dir() else {}


def _write(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def start_seeds(plan: Any, settings: dict, seeds: Sequence[int], work: Path) -> list:
    """One SeedRun actor per seed, seed i in bundle i of the trial's placement group (the
    trainable's own head bundle is empty), each resuming from its files in `work`."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = ray.util.get_current_placement_group()
    remote = ray.remote(SeedRun)
    actors = []
    for i, seed in enumerate(seeds):
        options: dict[str, Any] = {"num_cpus": plan.resources.cpu,
                                   "num_gpus": plan.resources.gpu or 0}
        if pg is not None:
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=i)
        actors.append(remote.options(**options).remote(
            plan, with_seed(settings, seed), _restore_files(folder_of(work, seeds, i))))
    return actors


def train_seeds(plan: Any, settings: dict, report: Callable[[dict], Any],
                work: Path) -> tuple[dict, list[dict]]:
    """Train the trial's seeds, `report` (the trial's EpochReporter) getting each epoch's
    aggregate; (the last result's fields, the trial's history of aggregates). Raises
    SeedFailed for a seed that failed; kills the seeds however it ends (a stop included)."""
    import ray

    seeds = seeds_of(settings, plan.budget.seeds)
    penalty = plan.budget.seed_penalty
    actors = start_seeds(plan, settings, seeds, work)
    rows: list[dict | None] = [None] * len(seeds)
    finals: list[dict | None] = [None] * len(seeds)
    history: list[dict] = []
    try:
        while any(f is None for f in finals):
            waiting = {a.next.remote(): i for i, a in enumerate(actors) if finals[i] is None}
            epoch_seen = False
            while waiting:
                ready, _ = ray.wait(list(waiting), num_returns=1)
                i = waiting.pop(ready[0])
                event = ray.get(ready[0])
                if event[0] == EPOCH:
                    rows[i], epoch_seen = event[1], True
                    _write(folder_of(work, seeds, i), event[2])
                elif event[0] == DONE:
                    finals[i] = event[1]
                    _write(folder_of(work, seeds, i), event[3])
                    if rows[i] is None and event[2]:  # resumed after its last epoch
                        rows[i] = event[2][-1]
                else:
                    raise SeedFailed(event[0], seeds[i], event[1])
            if epoch_seen and all(r is not None for r in rows):
                row = aggregate(rows, seeds, plan.objectives, penalty)
                history.append(clean(row))
                report(row)
        if not history and all(r is not None for r in rows):  # resumed after its last epoch
            history.append(clean(aggregate(rows, seeds, plan.objectives, penalty)))
        return final(finals, seeds, plan.objectives, penalty), history
    finally:
        for actor in actors:
            ray.kill(actor)
