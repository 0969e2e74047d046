"""Shared fixtures: one small real Ray for the session, quiet environment, toy spaces."""
from __future__ import annotations

import os

# Before Ray starts: its workers inherit these.
os.environ.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0",
                   "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0",
                   "TUNE_PRINT_ALL_TRIAL_ERRORS": "0", "SEARCH_KNOWN_WORK_SECONDS": "0.05",
                   "OMP_NUM_THREADS": "1"})
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.pop("SEARCH_STORAGE", None)

import pytest  # noqa: E402

from search.lifecycle.runner import RunOptions  # noqa: E402

FIT = "search.testing:known_work_fit"


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from search.cluster.connect import quiet_environment

    quiet_environment()
    started = not ray.is_initialized()
    if started:
        # Four fake GPUs (Ray sets CUDA_VISIBLE_DEVICES; torch sees none): placement tests.
        ray.init(num_cpus=2, num_gpus=4, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", object_store_memory=200 * 1024 ** 2)
    import logging

    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    yield ray.cluster_resources()
    if started:
        ray.shutdown()


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture
def options(tmp_path):
    """Run options writing under tmp_path, with the known-work trainer."""
    def make(**kw):
        return RunOptions(**{"output": str(tmp_path / "out"), "fit": FIT, "retries": 0,
                             "live": False, **kw})
    return make
