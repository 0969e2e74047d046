"""Where a stage trains: as a Ray task with a trial's resources, on a node that has them.

On a cluster the driver is often the CPU-only head: a distillation of a ResNet there would take
hours on its CPUs while the GPU nodes idle. So a training stage runs as one Ray task with the
space's per-trial request (`resources.cpu`, `resources.gpu`, the GPU share widened to a whole
GPU where there is one: the stage runs alone) whenever the space asks for a GPU or the search
joined a cluster; a local CPU-only run trains in this process, which has the same CPUs. The
task loads its own data on its node and sends back the model (on the CPU, as every StageModel
is), the per-epoch metrics, which the pipeline then reports, and where it ran. A distill with
`trials: N` runs each student as such a task, one after the other (the study's sampler, in the
driver, picks the next student's options from the ones before).
"""
from __future__ import annotations

import os
from typing import Any, Callable

from spaces.section_types import Resources


def stage_resources(space: Any, address: str | None) -> Resources | None:
    """The per-trial request a stage's task gets; None: train in this process."""
    res = space.resources
    if res.gpu > 0 or address or os.environ.get("RAY_ADDRESS"):
        return res
    return None


def placed(res: Resources) -> Resources:
    """`res` checked against the connected cluster's nodes (one line when no node has it, not
    a task that waits forever) and its GPU share widened as for one trial alone: a stage runs
    by itself after the search, so a fraction becomes a whole GPU where a node has one."""
    import ray

    from search.cluster.gpus import node_resources
    from search.lifecycle.plan import concurrency, spread

    nodes = node_resources()
    concurrency(res, ray.cluster_resources(), nodes)
    return spread(res, nodes, 1)


def describe(res: Resources) -> str:
    return f"{res.cpu:g} CPU" + (f" and {res.gpu:g} GPU" if res.gpu else "")


def where() -> dict:
    """Where this task runs: its Ray node and the GPUs Ray gave it."""
    import ray

    return {"node": ray.get_runtime_context().get_node_id(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


def _call(fn: Callable, args: tuple, kwargs: dict) -> dict:
    """The task's body: the value, or the exception to raise again in the driver (Ray's own
    wrapper would turn a user's one-line mistake into a remote traceback)."""
    try:
        return {"value": fn(*args, **kwargs)}
    except Exception as err:  # noqa: BLE001 - handed back whole, raised again by in_task
        return {"error": err}


def in_task(resources: Resources, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` as one Ray task holding `resources` (Ray places it on a node that
    has them and sets CUDA_VISIBLE_DEVICES there); its value, or its exception raised here."""
    import ray

    task = ray.remote(_call).options(num_cpus=resources.cpu, num_gpus=resources.gpu or 0,
                                     max_retries=0)
    answer = ray.get(task.remote(fn, args, kwargs))
    if "error" in answer:
        raise answer["error"]
    return answer["value"]


def train_stage(stage: dict, previous: Any, threads: int) -> tuple[Any, list[dict], dict]:
    """In the task: the stage on `previous`, loading its data here; (model, epoch metrics,
    where it ran)."""
    from search.cluster.gpus import trial_cleanup
    from trainers.stages import run_stage

    reports: list[dict] = []
    try:
        model = run_stage(stage, previous, data=None, cpus=threads, report=reports.append)
    finally:
        trial_cleanup()
    return model, reports, where()


def train_student(stage: dict, teacher: Any, threads: int) -> tuple[Any, float, dict]:
    """In the task: one student of a distill search (distill.train_student, its data loaded
    here); (student, validation accuracy, where it ran)."""
    from search.cluster.gpus import trial_cleanup

    from .distill import train_student as train

    try:
        student, accuracy = train(stage, teacher, data=None, cpus=threads)
    finally:
        trial_cleanup()
    return student, accuracy, where()
