"""Run by test_gpus.py in a process of its own (the session's Ray is another one): a two-node
`ray.cluster_utils.Cluster`, a CPU-only head and a worker with two fake GPUs. Prints one JSON
line of what it saw."""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

os.environ.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                   "OMP_NUM_THREADS": "1"})

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from search.cluster import gpus  # noqa: E402
from search.errors import UserError  # noqa: E402
from search.lifecycle.plan import Budget, Objective, Resources, concurrency, spread  # noqa: E402
from search.stages.placement import in_task, train_stage  # noqa: E402
from search.testing import toy_space  # noqa: E402
from search.tune.trainable import TrialPlan  # noqa: E402

STORE = 80 * 1024 ** 2


def trial(meet: str) -> tuple[str, str]:
    """A trial's view: its node and GPU, once both trials run at once."""
    Path(meet, str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(os.listdir(meet)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return ray.get_runtime_context().get_node_id(), os.environ.get("CUDA_VISIBLE_DEVICES")


def where() -> dict:
    return {"node": ray.get_runtime_context().get_node_id(),
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpu_ids": ray.get_gpu_ids()}


def main() -> dict:
    seen: dict = {}
    nodes = gpus.node_resources()
    try:
        concurrency(Resources(2, 0), ray.cluster_resources(), nodes)
    except UserError as err:
        seen["fit_error"] = str(err)
    res = Resources(0.5, 0.25)
    seen["slots"] = slots = concurrency(res, ray.cluster_resources(), nodes)
    placed = spread(res, nodes, slots)
    seen["share"] = placed.gpu
    meet = tempfile.mkdtemp()
    task = ray.remote(trial).options(num_cpus=placed.cpu, num_gpus=placed.gpu)
    answers = ray.get([task.remote(meet) for _ in range(2)])
    seen["trial_nodes"] = [a[0] for a in answers]
    seen["trial_gpus"] = [a[1] for a in answers]
    plan = TrialPlan((Objective("val_accuracy", "maximize"),), Budget(1), placed)
    try:
        gpus.preflight(toy_space(resources={"cpu": 0.5, "gpu": 0.25}), plan)
    except UserError as err:
        seen["preflight"] = str(err)
    seen["stage"] = in_task(placed, where)
    try:
        in_task(placed, train_stage, {"stage": "nope"}, None, 1)
    except Exception as err:  # the stage's own error, raised again in the driver
        seen["stage"]["error"] = f"{type(err).__name__}: {err}"
    seen["driver"] = ray.get_runtime_context().get_node_id()
    return seen


if __name__ == "__main__":
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "object_store_memory": STORE})
    worker = cluster.add_node(num_cpus=1, num_gpus=2, object_store_memory=STORE)
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        cluster.wait_for_nodes()
        seen = main()
        seen["worker"] = worker.node_id
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(seen))
