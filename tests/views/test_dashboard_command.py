"""`search dashboard`: optuna-dashboard on the study of a search (a copied folder's own), on
loopback, ending with the command; a PostgreSQL password never shown."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from views_helpers import NAME, env, serve


def get(url: str):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


@pytest.mark.slow
@pytest.mark.timeout(1800)  # it may be the first to wait for the session's search
def test_dashboard_serves_the_study_of_the_copied_folder(dashboard, searched):
    base = f"http://127.0.0.1:{dashboard.port}"
    studies = {s["study_name"]: s for s in get(f"{base}/api/studies")["study_summaries"]}
    study_id = studies[NAME]["study_id"]
    assert dashboard.link(f"study {NAME}:") == f"{base}/dashboard/studies/{study_id}"
    assert f"sqlite:///{searched.folder / 'study.db'}" in dashboard.lines[0]
    shown = get(f"{base}/api/studies/{study_id}?after=0")["trials"]
    want = {t.number: t.state.name for t in searched.study().trials}
    assert {t["number"]: t["state"].upper() for t in shown} == want


def test_dashboard_needs_a_search_and_a_free_port(tmp_path):
    run = [sys.executable, "-m", "search.cli", "dashboard"]
    out = subprocess.run(run, capture_output=True, text=True, env=env(), cwd=tmp_path)
    assert out.returncode == 2 and "name a search" in out.stderr, out.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([*run, "--storage", f"sqlite:///{tmp_path}/study.db", "--port",
                              str(port)], capture_output=True, text=True, env=env(),
                             cwd=tmp_path)
    assert out.returncode == 2 and f"--port {port}: already in use" in out.stderr, out.stderr


@pytest.mark.postgres
def test_a_postgresql_password_is_never_shown(tmp_path):
    import optuna
    import sqlalchemy

    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    try:
        sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3}).connect().close()
    except Exception as err:
        pytest.skip(f"PostgreSQL at {url} unreachable: {str(err).splitlines()[0]}")
    name, password = f"dash-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name=name, storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    secret = tmp_path / "pw"
    secret.write_text(password + "\n")
    try:
        served = serve(["dashboard", "--storage", url, "--storage-password-file", str(secret)],
                       "optuna-dashboard:", tmp_path)
        try:
            base = f"http://127.0.0.1:{served.port}"
            names = {s["study_name"] for s in get(f"{base}/api/studies")["study_summaries"]}
            assert name in names
            cmdline = Path(f"/proc/{served.proc.pid}/cmdline").read_bytes().decode()
            assert password not in cmdline
        finally:
            assert served.stop(signal.SIGTERM) == 0  # SIGTERM ends it as Ctrl-C does
        assert password not in "\n".join(served.lines)
        assert not any(password in p.read_text(errors="replace")
                       for p in tmp_path.rglob("*") if p.is_file() and p != secret)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", served.port)) != 0  # nothing left listening
    finally:
        optuna.delete_study(study_name=name, storage=storage)
        storage.engine.dispose()
