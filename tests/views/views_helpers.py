"""Helpers of tests/views: the small search every test there looks at, and the `search ui` /
`search dashboard` processes serving it.

The search runs its trials one at a time: ASHA then decides the same way on every machine
(seeded sampler, deterministic training), and trial 1, worse than trial 0 after epoch 1, is
pruned, so that every view shows a pruned trial beside complete ones; one worker started
instead of two is also quicker on two cores. One cheap stage (dynamic int8 quantisation, a
fraction of a second) gives the `stages` run and the `candidate` model version."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
NAME = "views"
MODEL = "views-model"
SPACE = f"""
name: {NAME}
seed: 5
data: {{dataset: digits, batch_size: 64}}
model: {{name: mlp, width: 32, depth: 1}}
train: {{epochs: 3}}
space:
  optimizer:
    lr: {{low: 1.0e-3, high: 1.0e-1, log: true}}
  regularization:
    label_smoothing: {{low: 0.0, high: 0.1}}
objective: {{metric: val_accuracy}}
budget: {{trials: 3}}
sampler: {{name: random}}
pruner: {{name: asha, grace_period: 1, reduction_factor: 3}}
resources: {{cpu: 1, max_concurrent: 1}}
stages: [{{stage: quantize, mode: int8_dynamic}}]
tracking: {{register_as: {MODEL}}}
"""
START_TIMEOUT = 300  # a loaded machine takes minutes to start an MLflow server


def env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if k not in ("MLFLOW_TRACKING_URI", "SEARCH_STORAGE", "RAY_ADDRESS")}
    return {**keep, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A `search ui` or `search dashboard` process and what it printed."""

    proc: subprocess.Popen
    port: int
    lines: list[str] = field(default_factory=list)

    def link(self, label: str) -> str:
        """The URL printed on the line that starts with `label` (after indentation)."""
        for line in self.lines:
            text = line.strip()
            if text.startswith(label):
                return re.search(r"(http://\S+)", text[len(label):]).group(1)
        raise AssertionError(f"no line {label!r} in {self.lines}")

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)


def serve(args: list[str], until: str, cwd: Path) -> Served:
    """Start `search ARGS` (a new session: signals are ours to send) and read its output up to
    the line starting with `until`."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", *args, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env(), cwd=cwd, start_new_session=True)
    served = Served(proc, port)
    deadline = time.monotonic() + START_TIMEOUT
    for line in proc.stdout:
        served.lines.append(line.rstrip("\n"))
        if line.startswith(until) or time.monotonic() > deadline:
            break
    if not served.lines or not served.lines[-1].startswith(until):
        served.stop(signal.SIGKILL)
        raise AssertionError("\n".join(served.lines[-40:]))

    def drain() -> None:  # the server's later lines must not fill the pipe and block it
        for line in proc.stdout:
            served.lines.append(line.rstrip("\n"))

    threading.Thread(target=drain, daemon=True).start()
    return served


