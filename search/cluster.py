"""Starting (or joining) Ray for one run, quietly.

An embedded local Ray is sized to this machine unless told otherwise; `--address` or
$RAY_ADDRESS joins an existing cluster instead. Usage statistics, the dashboard and Ray's own
progress output are off (the run prints its own), and a Ray already started in this process
(tests, notebooks) is used as it is.

Open ports: Ray 2.60 cannot keep a node on loopback (it turns a 127.0.0.1 node address into the
host's address, and its gRPC servers bind every interface), so a local Ray is started with
Ray's token authentication and a fresh random token held only in this process's environment
(its workers inherit it; nothing is written under the home folder): a client without the token
is refused on every port. A user's own $RAY_AUTH_MODE / $RAY_AUTH_TOKEN win; joining a cluster
uses the cluster's (deploy/README.md).
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
from typing import Iterator

from search import reaper
from search.errors import UserError
from search.urls import secret_free

# Set before Ray or Tune read them (ray.init, the Tune controller). A user's own value wins.
QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",             # with verbose=0: no Tune tables at all
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",    # one line per failure from our callback instead
    "RAY_DEDUP_LOGS": "0",
    # Tune's TensorBoard logger imports torch on the driver: 3 s before the first trial. The
    # runner adds Tune's CSV and JSON loggers itself (progress.csv, result.json per trial).
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # Reusing an actor waits this long for the last trial's thread to end, then errors the
    # next trial ("Trainable runner reuse requires reset_config()"): 2 s by default, which a
    # loaded machine overruns while a trial writes its final files.
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60",
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
    # "Creating initial MLflow database tables..." and its like: not news to a user
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


def local_token(address: str | None = None) -> None:
    """Token authentication for a Ray to be started here (no `address`, no $RAY_ADDRESS),
    unless the user chose a mode or a token. Called before Ray is imported: Ray's core reads
    the mode once, at import."""
    if address or os.environ.get("RAY_ADDRESS") or "RAY_AUTH_MODE" in os.environ \
            or "RAY_AUTH_TOKEN" in os.environ:
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


@contextlib.contextmanager
def ray_session(address: str | None = None, cpus: int | None = None,
                gpus: float | None = None,
                runtime_env: dict | None = None) -> Iterator[dict[str, float]]:
    """Ray for the duration of a run; yields the cluster's resources (CPU, GPU, ...).
    `runtime_env` (search/shipping.py: the user's modules) applies to every worker of the run."""
    import ray

    quiet_environment()
    started, watchdog = False, None
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
            # a local Ray of ours must not outlive this process, even killed (search/reaper.py)
            watchdog = reaper.watch()
        # Ray records the driver's command line (its job's entrypoint): no password in it.
        sys.argv[:] = [secret_free(a) for a in sys.argv]
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as err:
            reaper.stop(watchdog)
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
        reaper.stop(watchdog)
