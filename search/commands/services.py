"""Local web services a command starts and serves until it ends (`search ui`: MLflow's server;
`search dashboard`: optuna-dashboard): loopback unless asked, a port in use said at once, and
nothing left listening when the command ends, however it ends.

A server we start as a child runs in a process group of its own (Ctrl-C on the terminal reaches
only the command, which then stops the group); SIGTERM and SIGHUP to the command end it the
way Ctrl-C does; a command killed with SIGKILL is cleaned up by the reaper (search/cluster/reaper.py),
which kills what is left of its children once it is gone.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from typing import Iterator

from search.errors import UserError

LOOPBACK = "127.0.0.1"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def add_listen_arguments(parser, port: int) -> None:
    parser.add_argument("--host", default=LOOPBACK, help="address to listen on (default "
                        "127.0.0.1; 0.0.0.0 to reach it from other machines)")
    from search.commands.values import MAX_PORT, whole

    parser.add_argument("--port", type=whole(1, MAX_PORT), default=port,
                        help=f"port (default {port})")


def base_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens for a server listening on host:port."""
    shown = LOOPBACK if host in ("0.0.0.0", "::", "") else host
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"


def check_port(host: str, port: int) -> None:
    """The server could listen on host:port: a UserError now (a port in use, an address that is
    not this machine's, a host that does not resolve), not the server's traceback later."""
    import errno

    from search.errors import shown_value

    if not 0 < port < 65536:
        raise UserError(f"--port {port}: must be between 1 and 65535")
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
            if err.errno == errno.EADDRINUSE:
                raise UserError(f"--port {port}: already in use on {host}; pick another port, "
                                f"e.g. --port {port + 1}") from None
            raise UserError(f"--host {shown_value(host)} --port {port}: cannot listen there "
                            f"({err.strerror})") from None


class Stopped(Exception):
    """SIGTERM or SIGHUP reached the command: it ends as on Ctrl-C."""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP raise Stopped in the main thread (the default would end the
    process at once, before the `finally` that stops the server)."""
    def raise_stopped(signum, frame):
        raise Stopped(signal.Signals(signum).name)

    saved = {s: signal.signal(s, raise_stopped) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def start_server(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """The server as a child in its own process group."""
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, start_new_session=True)


def wait_up(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    """True once `url` answers; False when the server exited or did not answer in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.25)
    return False


def stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """The server and everything in its process group end: SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; its workers (same group) get the same signal once more
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        break
