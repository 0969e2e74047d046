"""A real Ray cluster of two nodes on loopback for the tests, and `search` run as a user runs it.

Each node is a `ray start --block` process in a session of its own, with its own temporary
folder and ports, so that stopping it (SIGTERM: Ray's handler stops the node's processes) and
then killing whatever is left of that session touches nothing but this cluster: other tests on
the machine run Rays of their own, and `ray stop` would stop those too.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
READY = "This command will now block forever"
FIT = "search.testing:known_work_fit"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
# MLflow keeps its tables in a schema of its own in `test` (Optuna's alembic_version is there).
MLFLOW_SCHEMA = "torch_search_cluster"
MLFLOW_URI = ("postgresql+psycopg2://postgres@127.0.0.1:5432/test"
              f"?options=-csearch_path%3D{MLFLOW_SCHEMA}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra: str) -> dict[str, str]:
    """The environment of the cluster's processes and of `search`: no token auth, no usage
    stats, quick known-work epochs, the venv's commands first on PATH (a job's `search`)."""
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER: Ray's single-node mode, which a local `search run`
    # earlier in this process set (search/cluster/connect.py); a worker node refuses to start in it
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "SEARCH_STORAGE", "MLFLOW_TRACKING_URI",
                        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    env.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_DEDUP_LOGS": "0",
                "OMP_NUM_THREADS": "1", "SEARCH_KNOWN_WORK_SECONDS": "0.5",
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra})
    return env


class Node:
    """One `ray start --block` process; its session holds every process of the node."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.temp = Path(tempfile.mkdtemp(prefix=f"rt{name[0]}", dir="/tmp"))  # short: sockets
        self.log = self.temp / "start.log"
        ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                 "--runtime-env-agent-port", "--metrics-export-port"]
        argv = [str(BIN / "ray"), "start", "--block", f"--temp-dir={self.temp}",
                "--node-ip-address=127.0.0.1", "--object-store-memory=100000000",
                *(f"{p}={free_port()}" for p in ports), *args]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while READY not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {self.name} did not start:\n"
                                   + self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.3)

    def stop(self) -> None:
        """SIGTERM (Ray stops the node's processes), then kill what is left of the session."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        for pid in session_pids(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)


def session_pids(sid: int) -> list[int]:
    """The processes of session `sid` (the node's `ray start` made it; workers stay in it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == sid:
                pids.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return pids


class TwoNodes:
    """A head (1 CPU, resource head_node, the job server) and a worker (1 CPU, resource
    worker_node), both on 127.0.0.1."""

    def __init__(self) -> None:
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.nodes: list[Node] = []
        # known_work_fit's meeting folder (search/testing.py): present only inside meeting()
        self.meet = Path(tempfile.mkdtemp(prefix="rtm", dir="/tmp")) / "meet"
        self.env = environment(SEARCH_KNOWN_WORK_MEET=f"2:{self.meet}")

    @contextlib.contextmanager
    def meeting(self):
        """While inside, the first two trials wait for each other: with one CPU per node, the
        second one's actor has to start on the other node (Tune would otherwise reuse the
        first one's actor when trials end before a new actor is up)."""
        self.meet.mkdir()
        try:
            yield
        finally:
            shutil.rmtree(self.meet, ignore_errors=True)

    def start(self) -> "TwoNodes":
        head = Node("head", ["--head", f"--port={self.port}", "--num-cpus=1",
                             '--resources={"head_node": 1}', "--include-dashboard=true",
                             "--dashboard-host=127.0.0.1",
                             f"--dashboard-port={self.dashboard_port}",
                             f"--ray-client-server-port={free_port()}"], self.env)
        self.nodes.append(head)
        head.wait_ready()
        worker = Node("worker", [f"--address={self.address}", "--num-cpus=1",
                                 '--resources={"worker_node": 1}'], self.env)
        self.nodes.append(worker)
        worker.wait_ready()
        self.wait_for(lambda: len(self.node_ids()) == 2, "both nodes alive")
        return self

    def node_ids(self) -> set[str]:
        """Alive nodes, from the dashboard's state API."""
        try:
            with urllib.request.urlopen(f"{self.dashboard}/api/v0/nodes?limit=100",
                                        timeout=5) as r:
                data = json.load(r)
        except OSError:
            return set()
        rows = data.get("data", {}).get("result", {}).get("result", [])
        return {n["node_id"] for n in rows if n.get("state") == "ALIVE"}

    def wait_for(self, check, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"two-node cluster: timed out waiting for {what}")
            time.sleep(0.5)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.meet.parent, ignore_errors=True)


def search(*args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    """`search ARGS` in a process of its own, as a user runs it."""
    return subprocess.run([str(BIN / "search"), *args], capture_output=True, text=True,
                          env=environment(**env), timeout=timeout)


def space_yaml(name: str, *, trials: int = 4, lr=(1.0e-4, 1.0), widths=(16, 32, 64),
               tracking: bool = True) -> str:
    return f"""
name: {name}
data: {{dataset: digits}}
model: {{name: mlp}}
train: {{epochs: 2}}
space:
  optimizer:
    lr: {{low: {lr[0]}, high: {lr[1]}, log: true}}
    name:
      choices:
        adamw: {{}}
        sgd:
          momentum: {{low: 0.0, high: 0.9}}
  model:
    width: {{choices: {list(widths)}}}
objective: {{metric: val_accuracy}}
budget: {{trials: {trials}}}
sampler: {{name: tpe, n_startup_trials: 2}}
pruner: {{name: none}}
resources: {{cpu: 1}}
tracking: {{enabled: {str(tracking).lower()}}}
"""
