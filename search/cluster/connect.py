"""Starting (or joining) Ray for one run, quietly.

An embedded local Ray is sized to this machine unless told otherwise; `--address` or
$RAY_ADDRESS joins an existing cluster instead. Usage statistics, the dashboard and Ray's own
progress output are off (the run prints its own), and a Ray already started in this process
(tests, notebooks) is used as it is.

Open ports: a local Ray listens on loopback only. Ray binds its servers (GCS, raylet, object
manager, workers, agents) to the node's address when that is 127.0.0.1 and to every interface
otherwise (ray#19918), and on Linux it turns a 127.0.0.1 node address into the host's address
(`resolve_ip_for_localhost`) unless Ray's single-node mode is on, the one Ray uses on macOS and
Windows: $RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (read once, when Ray is imported). Local runs also
use Ray's token authentication with a fresh random token held only in this process's
environment (its workers inherit it; nothing is written under the home folder), so a local
client without the token is refused too. A user's own $RAY_AUTH_MODE / $RAY_AUTH_TOKEN /
$RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER win; joining a cluster uses the cluster's (deploy/README.md).
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
from typing import Iterator

from search.cluster import reaper
from search.errors import UserError, shown_value
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
    # A reused trial actor waits this long for the stopped trial's thread to end, which may
    # first finish the epoch it is in. Tune's default, 2 s, is shorter than an epoch: the next
    # trial then errors (a retry spent), and the actor, stopping, keeps its CPU until Tune's
    # forced clean-up (TUNE_FORCE_TRIAL_CLEANUP_S, 10 minutes). Waiting as long costs no more
    # and loses nothing. Read by the workers, which inherit the driver's environment in a
    # local Ray.
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "600",
}
# "0": the node address stays 127.0.0.1, so every server of a local Ray binds loopback only
SINGLE_NODE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
OBJECT_STORE_BYTES = 512 * 1024 ** 2  # results and checkpoints do not pass through it


class _SaidAlready(logging.Filter):
    """Drops Tune's "Trials did not complete: [search_trial_...]" (an ERROR line of internal
    names): every failed trial has had its line with its reason, and the run its summary."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Trials did not complete")


def quiet_environment() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # A failed trial's last result has no objective, and with several objectives the
    # whole-trial ones (num_params) exist only in the last result: Tune must not insist.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    tune_log = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _SaidAlready) for f in tune_log.filters):
        tune_log.addFilter(_SaidAlready())
    # "Creating initial MLflow database tables..." and its like: not news to a user
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


def local_token(address: str | None = None) -> None:
    """Loopback-only ports and token authentication for a Ray to be started here (no
    `address`, no $RAY_ADDRESS), unless the user chose otherwise. Called before Ray is
    imported: Ray reads both settings once, at import."""
    if address or os.environ.get("RAY_ADDRESS"):
        return
    os.environ.setdefault(SINGLE_NODE, "0")
    if "RAY_AUTH_MODE" in os.environ or "RAY_AUTH_TOKEN" in os.environ:
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


# The HTTP/2 client preface and an empty SETTINGS frame: a Ray GCS (gRPC) answers with its own
# SETTINGS frame (frame type 4 in byte 3); PostgreSQL, a dashboard or any HTTP/1 server do not.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
PROBE_S = 3.0


def check_address(address: str, where: str = "--address") -> None:
    """A UserError in seconds when nothing at `address` (HOST:PORT or ray://HOST:PORT) speaks
    Ray's protocol: Ray itself retries an address where nothing answers, or something else
    answers, for as long as the process lives. "auto" and "local" are Ray's to resolve."""
    text = address.strip()
    if text in ("auto", "local"):
        return
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    usage = (f"{where} {shown_value(address)}: expected HOST:PORT of the cluster's head (its "
             "GCS port, default 6379) or ray://HOST:PORT (Ray Client, default 10001)")
    if scheme not in ("", "ray"):
        hint = "; the dashboard's http://HOST:8265 is for `search submit` and `search status`" \
            if scheme in ("http", "https") else ""
        raise UserError(usage + hint)
    host, colon, port = rest.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65_535:
        raise UserError(usage)
    try:
        infos = _resolve(host, int(port))
    except OSError as err:
        raise UserError(f"{where} {shown_value(address)}: cannot resolve host {host!r} "
                        f"({err.strerror or err})") from None
    family, kind, proto, _, sockaddr = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(PROBE_S)
            sock.connect(sockaddr)
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "", "false"):
                if not _speaks_grpc(sock):
                    raise UserError(f"{where} {shown_value(address)}: something listens there "
                                    "but it is not a Ray cluster (no gRPC answer); give the "
                                    "head's GCS port (default 6379), or ray://HOST:10001")
    except ConnectionRefusedError:
        raise UserError(f"{where} {shown_value(address)}: nothing listens there (connection "
                        "refused); start the cluster (`ray start --head`) or fix the address") \
            from None
    except (socket.timeout, TimeoutError):
        raise UserError(f"{where} {shown_value(address)}: no answer within {PROBE_S:g} s; "
                        "check the address and that this machine may reach it") from None
    except OSError as err:
        raise UserError(f"{where} {shown_value(address)}: cannot connect "
                        f"({err.strerror or err})") from None


def _resolve(host: str, port: int) -> list:
    """getaddrinfo, bounded: a resolver that does not answer is said in seconds."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM).result(
            timeout=PROBE_S)
    except concurrent.futures.TimeoutError:
        raise OSError(f"no answer from the name resolver within {PROBE_S:g} s") from None
    finally:
        pool.shutdown(wait=False)


def _speaks_grpc(sock: socket.socket) -> bool:
    """Whether the peer answers the HTTP/2 preface with a SETTINGS frame, within PROBE_S."""
    try:
        sock.sendall(_H2_PREFACE)
        reply = b""
        while len(reply) < 4:
            chunk = sock.recv(9 - len(reply))
            if not chunk:
                break
            reply += chunk
    except OSError:  # reset, or silent past the timeout
        return False
    return len(reply) >= 4 and reply[3] == 4


@contextlib.contextmanager
def ray_session(address: str | None = None, cpus: int | None = None,
                gpus: float | None = None,
                runtime_env: dict | None = None) -> Iterator[dict[str, float]]:
    """Ray for the duration of a run; yields the cluster's resources (CPU, GPU, ...).
    `runtime_env` (search/cluster/shipping.py: the user's modules) applies to every worker of the run."""
    if "ray" not in sys.modules:  # a caller that did not call local_token before importing Ray
        local_token(address)
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
            # a local Ray of ours must not outlive this process, even killed (search/cluster/reaper.py)
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
