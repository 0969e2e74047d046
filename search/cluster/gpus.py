"""GPUs for a run: where trials go, whether a GPU worker can train at all, and what a trial
sets up and gives back on its GPU (search/README.md, "GPUs").

- `node_resources()`: each alive node's resources, so a request is checked against one node
  (a trial's bundle never spans two) and concurrency counted node by node (plan.py).
- `placed(plan, nodes, running)`: the plan with its GPU share widened so that trials spread
  over every GPU before any GPU is shared (plan.spread).
- `preflight(space, plan)`: before any trial, a Ray task with the trial's request checks on a
  GPU worker that torch can use the GPU Ray gives it; one line otherwise.
- `trial_setup(plan, settings)` / `trial_cleanup()`: in the trial, the GPU share as the memory
  cap, the unusable-GPU check, and the cached memory given back for the next trial of a reused
  actor.
"""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Any

from search.errors import UserError
from search.lifecycle.plan import spread

from search.tune.keys import OOM_KEY  # noqa: F401  (the trial reports it)
PREFLIGHT_SECONDS = 300.0  # a GPU worker that does not answer by then is reported, not waited on


def node_resources() -> list[dict[str, float]]:
    """The resources of each alive node of the connected Ray cluster."""
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def placed(plan: Any, nodes: list[dict[str, float]], running: int) -> Any:
    """`plan` (a TrialPlan) with the spread-then-pack GPU share for `running` trials at once."""
    return replace(plan, resources=spread(plan.resources, nodes, running))


def placement_line(res: Any, nodes: list[dict[str, float]], running: int,
                   seeds: int = 1) -> str:
    """What the run says of its GPUs: each trial's (or, with budget.seeds > 1, each seed's)
    request and how they share the GPUs; `running` counts trials."""
    whole = sum(int(float(n.get("GPU", 0)) + 1e-9) for n in nodes)
    share = "a GPU of its own" if res.gpu >= 1 else f"{res.gpu:g} of a GPU (also its memory cap)"
    what = f"trial{'s' if running != 1 else ''}"
    each = "each"
    if seeds > 1:
        what += f" of {seeds} seeds"
        each = "each seed"
    return (f"GPUs: {running} {what} at once on {whole} GPU"
            f"{'s' if whole != 1 else ''}; {each} holds {res.cpu:g} CPU and {share}")


def train_device(settings: dict) -> str:
    """The trial's `train.device` (auto when the config has no train group: a --fit of one's
    own that does not say)."""
    train = settings.get("train") if isinstance(settings, dict) else None
    return str((train or {}).get("device", "auto"))


def fixed_device(space: Any) -> str:
    """train.device of the space's trials: it cannot be searched, so any one config says it."""
    from search.lifecycle.preflight import _Pinned

    try:
        return train_device(space.define_by_run(_Pinned({})))
    except Exception:  # a space whose configs are not the trainer's: nothing says cpu
        return "auto"


def probe() -> dict:
    """What a GPU worker's torch makes of the GPU Ray gave this process (runs as a Ray task)."""
    import ray

    from trainers.devices import gpu_problem

    problem = gpu_problem()
    return {"problem": problem, "node": ray.get_runtime_context().get_node_id(),
            "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}


def preflight(space: Any, plan: Any, timeout: float = PREFLIGHT_SECONDS) -> dict | None:
    """Before the search: with a GPU request and a train.device other than cpu, one Ray task
    with the trial's resources checks that torch there can use its GPU. UserError (one line)
    when it cannot; the probe's answer otherwise (None when nothing was checked). Only an
    explicit `train.device: cpu` skips it (the trials then hold GPUs and train on CPUs)."""
    if not plan.resources.gpu or fixed_device(space) == "cpu":
        return None
    import ray

    task = ray.remote(probe).options(num_cpus=plan.resources.cpu, num_gpus=plan.resources.gpu,
                                     max_retries=0)
    ref = task.remote()
    try:
        answer = ray.get(ref, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise UserError(f"resources.gpu: no GPU worker ran the device check within "
                        f"{timeout:g} s; check `ray status` for GPU nodes") from None
    if answer["problem"]:
        raise UserError(f"resources.gpu: on Ray node {answer['node'][:12]}, {answer['problem']}")
    return answer


def trial_setup(plan: Any, settings: dict) -> None:
    """In a trial with a GPU: its share of the GPU caps its memory (trainers.devices reads it),
    and a GPU torch cannot use fails the trial now with the reason (a TrainerError: recorded,
    not retried) instead of training on the CPU unnoticed."""
    if not plan.resources.gpu or train_device(settings) == "cpu":
        return
    from trainers.devices import MEMORY_FRACTION_ENV, check_gpu

    os.environ[MEMORY_FRACTION_ENV] = repr(float(plan.resources.gpu))
    check_gpu()


def trial_cleanup() -> None:
    """After a trial: free what it cached on the GPU before a reused actor takes the next."""
    if "torch" in sys.modules:
        from trainers.devices import release_memory

        release_memory()


def device_fields(result: Any) -> dict:
    """The device a trial trained on and its peak GPU memory, for its last result."""
    facts = getattr(result, "device", None)
    if isinstance(facts, dict) and facts:
        return dict(facts)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        from trainers.devices import facts as device_facts

        return device_facts(torch.device("cuda"))
    return {}
