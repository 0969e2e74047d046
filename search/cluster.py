"""Starting (or joining) Ray for one run, quietly.

An embedded local Ray is sized to this machine unless told otherwise; `--address` or
$RAY_ADDRESS joins an existing cluster instead. Ray's auth token, usage statistics, dashboard
and its own progress output are off (the run prints its own), and a Ray already started in this
process (tests, notebooks) is used as it is.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from search.errors import UserError

# Set before Ray or Tune read them (ray.init, the Tune controller). A user's own value wins.
QUIET_ENV = {
    "RAY_AUTH_MODE": "disabled",           # no token written under the home folder
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",             # with verbose=0: no Tune tables at all
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",    # one line per failure from our callback instead
    "RAY_DEDUP_LOGS": "0",
    # Tune's TensorBoard logger imports torch on the driver: 3 s before the first trial. The
    # runner adds Tune's CSV and JSON loggers itself (progress.csv, result.json per trial).
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}
OBJECT_STORE_BYTES = 512 * 1024 ** 2  # results and checkpoints do not pass through it


def quiet_environment() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # A failed trial's last result has no objective, and with several objectives the
    # whole-trial ones (num_params) exist only in the last result: Tune must not insist.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def ray_session(address: str | None = None, cpus: int | None = None,
                gpus: float | None = None,
                runtime_env: dict | None = None) -> Iterator[dict[str, float]]:
    """Ray for the duration of a run; yields the cluster's resources (CPU, GPU, ...).
    `runtime_env` (search/shipping.py: the user's modules) applies to every worker of the run."""
    import ray

    quiet_environment()
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict = dict(include_dashboard=False, logging_level=logging.ERROR,
                            log_to_driver=False, configure_logging=True)
        if runtime_env:
            kwargs["runtime_env"] = runtime_env
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(num_cpus=cpus, num_gpus=gpus, object_store_memory=OBJECT_STORE_BYTES)
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as err:
            where = f"--address {address}" if address else "local Ray"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{where}: cannot start or join Ray ({first}); check the address "
                            "and that `ray status` works there") from None
        started = True
    try:
        yield dict(ray.cluster_resources())
    finally:
        if started:
            ray.shutdown()
