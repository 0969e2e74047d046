"""A real `search run` as a user starts it (its own local Ray, a PostgreSQL URL with a password):
no file it leaves under its output folder or Ray's session folder holds the password, every
Ray port of the run listens on loopback only, and none serves a client that lacks the run's
token."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).parents[3]
SECRET = "s3cretPW"
URL = f"postgresql://root:{SECRET}@127.0.0.1:5432/test"
SPACE = """
name: {name}
seed: 1
data: {{dataset: digits, batch_size: 64}}
model: {{name: mlp, width: 16, depth: 1}}
train: {{epochs: 2}}
space:
  optimizer:
    lr: {{low: 1.0e-2, high: 3.0e-2, log: true}}
objective: {{metric: val_accuracy}}
budget: {{trials: 1}}
sampler: {{name: random}}
pruner: {{name: none}}
resources: {{cpu: 1}}
tracking: {{enabled: true}}
"""


def listening(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process name) of every listening TCP socket of these processes."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        for pid in pids:
            if f"pid={pid}," in line:
                found.append((line.split()[3], line.split('"')[1] if '"' in line else "?"))
    return found


def refused_without_token(port: str) -> bool:
    """Whether the run's GCS refuses a client that has no token (Ray says Unauthenticated)."""
    code = ("from ray._raylet import GcsClient\n"
            f"GcsClient(address='127.0.0.1:{port}')"
            ".internal_kv_get(b'x', None, timeout=3)\n")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_AUTH_TOKEN", None)
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode != 0 and "InvalidAuthToken" in r.stderr + r.stdout


def holding(root: Path, secret: bytes) -> list[str]:
    """Every file under root whose bytes contain the secret (binary files included)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if secret in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    return hits


def test_a_run_with_a_database_password_writes_it_nowhere_and_its_ports_need_the_token(
        tmp_path):
    import psutil

    from search.studies import study as studies
    from search.errors import UserError

    try:
        storage = studies.open_storage(URL)
    except UserError as err:
        pytest.skip(f"PostgreSQL is unreachable: {err}")
    name = f"secret-{uuid.uuid4().hex[:8]}"
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(name=name))
    ray_tmp = Path(tempfile.mkdtemp(prefix="r13", dir="/tmp"))  # socket paths stay short
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "SEARCH_STORAGE", "RAY_ADDRESS",
                        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    env.update(RAY_TMPDIR=str(ray_tmp), PYTHONPATH=str(ROOT), SEARCH_KNOWN_WORK_SECONDS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "run", str(space), "--output",
         str(tmp_path / "out"), "--plain", "--cpus", "1", "--storage", URL,
         "--fit", "search.testing:known_work_fit"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sockets: set[tuple[str, str]] = set()
    gcs_refuses = None
    try:
        while proc.poll() is None:
            try:
                pids = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                break
            now = listening(pids | {proc.pid})
            sockets |= set(now)
            gcs = [addr.rsplit(":", 1)[1] for addr, who in now if who == "gcs_server"]
            if gcs and gcs_refuses is None and any("ray::" in w for _, w in now):
                gcs_refuses = refused_without_token(gcs[0])
            time.sleep(0.3)
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True) if proc.poll() is None else None
        if name in studies.study_names(storage):
            import optuna

            optuna.delete_study(study_name=name, storage=storage)
    assert proc.returncode == 0, output
    assert SECRET not in output
    assert holding(tmp_path / "out", SECRET.encode()) == []
    assert holding(ray_tmp, SECRET.encode()) == []
    assert any((tmp_path / "out").rglob("search_run.json"))
    assert any(ray_tmp.rglob("session_*")), "Ray's session folder was elsewhere"
    shutil.rmtree(ray_tmp, ignore_errors=True)
    # Every port of the run's own Ray listens on loopback only (search/cluster/connect.py), and the
    # GCS, seen listening, refused a client without the run's token as well.
    assert any(who == "gcs_server" for _, who in sockets), sockets
    wide = [(addr, who) for addr, who in sockets
            if not addr.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:"))]
    assert wide == [], f"listening beyond loopback: {wide}"
    assert gcs_refuses is True
