"""A local Ray of ours listens on loopback only (search/cluster/connect.py): every listening socket of
the processes it starts (GCS, raylet, workers, dashboard and runtime-env agents) is bound to
127.0.0.1, and a client without the run's token is refused. Real Ray, started as `search run`
starts it: `local_token` before Ray is imported, then `ray_session`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[3]
PROBE = r"""
import json, time
from search.cluster.connect import local_token, ray_session
local_token(None)
import ray
import psutil  # Ray's own copy (ray/thirdparty_files), on the path once Ray is imported
with ray_session(cpus=1):
    ray.get(ray.remote(lambda: 1).remote())  # a worker process listens too
    time.sleep(1)
    me = psutil.Process()
    seen = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            for c in proc.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    seen.append([proc.name(), c.laddr.ip, c.laddr.port])
        except psutil.Error:
            pass
    print("SOCKETS " + json.dumps(seen))
"""
LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


def test_a_local_ray_listens_on_loopback_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS",
                                                                     "RAY_ENABLE_WINDOWS"))}
    env.update(PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                       timeout=180, cwd=tmp_path)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("SOCKETS ")]
    assert r.returncode == 0 and line, r.stdout[-2000:] + r.stderr[-3000:]
    sockets = json.loads(line[0][len("SOCKETS "):])
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets
    assert any(n.startswith("ray::") for n in names), sockets  # agents and the worker
    wide = [s for s in sockets if s[1] not in LOOPBACK]
    assert wide == [], f"listening beyond loopback: {wide}"
