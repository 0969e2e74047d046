"""`search ui NAME`: the MLflow UI (`mlflow server`) on a search's tracking backend."""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request

from search.commands import add_search_arguments
from search.commands.values import MAX_PORT, whole

NAME = "ui"
HELP = "start the MLflow UI on a search's tracking backend and print its URL"
START_TIMEOUT = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser, optional=True, storage=False)
    parser.add_argument("--tracking-uri", metavar="URI", help="backend to show (default: "
                        "$MLFLOW_TRACKING_URI, else the one the search used)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on "
                        "(default 127.0.0.1; 0.0.0.0 to reach it from other machines)")
    parser.add_argument("--port", type=whole(1, MAX_PORT), default=5000,
                        help="port (default 5000)")


def server_command(uri: str, artifacts: str, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
            "--registry-store-uri", uri, "--default-artifact-root", artifacts,
            "--host", host, "--port", str(port), "--workers", "1"]


def run(args: argparse.Namespace) -> int:
    from search.errors import UserError
    from search.tracking.backend import (ARTIFACT_DIR, ENV_URI, default_uri, is_http,
                                         normalise, probe, redact)

    if args.tracking_uri:
        normalise(args.tracking_uri, "--tracking-uri")
    uri = args.tracking_uri or os.environ.get(ENV_URI)
    artifacts = os.path.abspath(ARTIFACT_DIR)  # only for experiments made in the UI itself
    if args.name or args.output or not uri:
        from search.lifecycle.runs import output_of
        from search.tracking.settings import saved_runs

        output = output_of(args.name, args.output)[1]
        runs = saved_runs(output)
        artifacts = str(output / ARTIFACT_DIR)
        if runs and runs[-1].artifact_location:
            artifacts = runs[-1].artifact_location
        if not uri and runs:
            uri = runs[-1].uri
        elif not uri and (output / "mlflow.db").is_file():
            uri = default_uri(output)
        elif not uri:
            raise UserError(f"{output}: no tracked search here; run `search run SPACE.yaml` "
                            "first, or give --output DIR or --tracking-uri URI")
    where = "--tracking-uri" if args.tracking_uri else \
        f"${ENV_URI}" if os.environ.get(ENV_URI) else "the search's tracking uri"
    uri = normalise(uri, where)
    if is_http(uri):  # already a server: its UI is right there
        print(f"MLflow UI: {uri}")
        return 0
    check_listen(args.host, args.port)
    probe(uri)  # a database that is down is said now, not after the server gives up
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION":
           os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}
    proc = subprocess.Popen(server_command(uri, artifacts, args.host, args.port), env=env,
                            start_new_session=True)
    url = f"http://{'127.0.0.1' if args.host == '0.0.0.0' else args.host}:{args.port}"
    try:
        if not _wait_up(proc, url):
            proc.terminate()
            raise UserError(f"mlflow server on {redact(uri)} did not start (exit code "
                            f"{proc.poll()}); its messages are above")
        print(f"MLflow UI: {url}  (backend {redact(uri)}; Ctrl-C stops it)", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            _stop(proc)


def check_listen(host: str, port: int) -> None:
    """The server could listen on host:port: a UserError now (a port in use, an address that is
    not this machine's, a host that does not resolve), not the server's traceback later."""
    from search.errors import UserError, shown_value

    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except (OSError, UnicodeError) as err:
        raise UserError(f"--host {shown_value(host)}: not an address of this machine "
                        f"({getattr(err, 'strerror', None) or err})") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            s.bind(sockaddr)
        except OSError as err:
            import errno

            if err.errno == errno.EADDRINUSE:
                raise UserError(f"--port {port}: already in use on {host}; pick another port, "
                                "e.g. --port 5001") from None
            raise UserError(f"--host {shown_value(host)} --port {port}: cannot listen there "
                            f"({err.strerror})") from None


def _wait_up(proc: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.25)
    return False


def _stop(proc: subprocess.Popen) -> None:
    """The server and its workers (its own process group) end together."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
