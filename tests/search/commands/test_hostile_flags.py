"""Hostile command lines through the real command line (`python -m search.cli ...`, one process
per case, tests/search/hostile_flags.py): each ends in ONE line `error: ...` naming the flag,
path or name and the rule, exit 2, no traceback, no raw control character, no password, and
nothing created or changed on disk (the inputs, the finished search it points at, the working
folder; the output folder it names stays absent).

In under 10 s: the command's CPU time is under 10 s, and its wall time under 10 s times how much
slower than its CPU time a process runs on this machine right now (wall / CPU of starting Python
and importing the libraries: 1 on an idle machine; measured once per session and again when a
case is over; a 2-core machine shared with other test runs is several times slower). A hang is
what this catches: `--address` of a closed port used to wait for ever.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hostile_cases import BASE
from hostile_flags import CASES, Ctx, Flag

ROOT = Path(__file__).parents[3]
LIMIT_S = 10.0
RUN_ID = "run-20260101-000000-abcdef"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: its kind, size and a hash of a regular file's bytes."""
    seen: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            seen[rel] = ("special",)
        elif path.is_dir():
            seen[rel] = ("dir",)
        else:
            seen[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return seen


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SEARCH_STORAGE", "RAY_ADDRESS", "MLFLOW_TRACKING_URI",
                        "RAY_API_SERVER_ADDRESS", "SEARCH_STORAGE_PASSWORD_FILE")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def run_cli(argv: list[str], cwd: Path, env: dict[str, str],
            timeout: float) -> tuple[int, str, str, float, float]:
    """(exit code, stdout, stderr, wall seconds, CPU seconds) of `python -m search.cli argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "search.cli", *argv], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return r.returncode, r.stdout, r.stderr, wall, cpu


def measure_slowdown(cwd: Path) -> float:
    """How much slower than its CPU time a process runs here now (wall / CPU seconds of
    starting Python and importing what a refused command imports): 1 on an idle machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import search.cli, spaces, optuna, sqlalchemy"],
                   env=_env({}), check=True, cwd=cwd, timeout=300)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return max(1.0, wall / max(cpu, 0.05))


@pytest.fixture(scope="session")
def slowdown(tmp_path_factory) -> float:
    return measure_slowdown(tmp_path_factory.mktemp("startup"))


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> Path:
    """The output folder of a finished search of space `hostile`: its study (SQLite, one
    completed trial), its run folder (run file, space record) and an empty MLflow database,
    written as `search run` writes them (no Ray needed to point commands at it)."""
    import optuna

    from search.studies import study as studies
    from search.lifecycle.runs import RUN_FILE, write_run_file, write_space
    from spaces import load_space

    out = tmp_path_factory.mktemp("finished") / "out"
    space = load_space(BASE, filename="hostile.yaml")
    url = studies.storage_url(None, out)
    storage = studies.open_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name="hostile", direction="maximize")
    trial = study.ask()
    params = {p.name: trial.suggest_float(p.name, 1e-3, 1e-1, log=True) for p in space.params}
    assert params
    trial.set_user_attr(studies.RUN_ID, RUN_ID)
    study.tell(trial, 0.5)
    storage.engine.dispose()
    run = out / RUN_ID
    write_space(run, space)
    write_run_file(run, {"run_id": RUN_ID, "space_name": "hostile", "study_name": "hostile",
                         "storage_url": url, "options": {}, "pid": 1, "host": "elsewhere",
                         "started": 0, "ended": 1, "state": "finished", "stages": None,
                         "space_format": "space"})
    assert json.loads((run / RUN_FILE).read_text())["state"] == "finished"
    (out / "mlflow.db").touch()
    return out


@pytest.fixture(scope="session")
def listeners():
    """(port that accepts and never answers, port of an HTTP/1 server that is neither Ray nor
    MLflow: 404 for everything)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield silent.getsockname()[1], server.server_address[1]
    server.shutdown()
    silent.close()


def test_the_corpus_covers_every_command():
    from search.cli import COMMANDS

    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 100
    commands = {m.rsplit(".", 1)[1] for m in COMMANDS}
    assert commands <= {i.split("_", 1)[0] for i in ids}, commands


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_command_line_is_one_line(case: Flag, finished, listeners, slowdown,
                                            tmp_path):
    inputs, cwd = tmp_path / "in", tmp_path / "cwd"
    inputs.mkdir()
    cwd.mkdir()
    ctx = Ctx(inputs=inputs, out=tmp_path / "out", done=finished, run_id=RUN_ID,
              silent_port=listeners[0], http_port=listeners[1])
    argv = case.argv(ctx)
    before = snapshot(tmp_path), snapshot(finished)
    code, out, err, wall, cpu = run_cli(argv, cwd, _env(case.env),
                                        timeout=LIMIT_S * slowdown * 3 + 60)
    if os.environ.get("HOSTILE_FLAG_TIMES"):  # BENCHMARKS.md "Hostile inputs" reads these
        with open(os.environ["HOSTILE_FLAG_TIMES"], "a") as f:
            f.write(json.dumps({"id": case.id, "wall": wall, "cpu": cpu, "code": code}) + "\n")
    lines = err.strip().splitlines()
    assert code == 2, (code, out[-500:], err[-3000:])
    assert "Traceback" not in err + out, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    line = lines[0]
    assert line.startswith("error: "), line
    assert case.expect in line, (case.expect, line)
    assert line.isprintable(), repr(line)  # no raw newline, escape or other control character
    assert len(line) < 1200, line[:300]
    if case.absent:
        assert case.absent not in out + err
    assert (snapshot(tmp_path), snapshot(finished)) == before, "something changed on disk"
    assert not ctx.out.exists()
    assert cpu < LIMIT_S, f"{cpu:.1f} s of CPU"
    if wall >= LIMIT_S * slowdown:  # the machine may have got busier since: measure again
        slowdown = max(slowdown, measure_slowdown(cwd))
    assert wall < LIMIT_S * slowdown, f"{wall:.1f} s, {cpu:.1f} s of CPU (slowdown {slowdown:.1f})"


def test_an_output_folder_others_may_not_write_is_one_line():
    """As an ordinary user (root writes everywhere): an output folder below a folder they may
    read but not write to."""
    import shutil
    import tempfile

    if os.geteuid() != 0 or subprocess.run(["which", "setpriv"], capture_output=True).returncode:
        pytest.skip("needs root and setpriv to act as another user")
    tmp_path = Path(tempfile.mkdtemp(prefix="hostile-", dir="/tmp"))  # pytest's is root's only
    shared = tmp_path / "shared"
    shared.mkdir()
    space = shared / "ok.yaml"
    space.write_text(BASE)
    for p in (tmp_path, shared):
        p.chmod(0o755)
    space.chmod(0o644)
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe = subprocess.run([*as_nobody, sys.executable, "-c", "import search.cli"],
                           capture_output=True, env=_env({}), cwd="/")
    if probe.returncode:
        pytest.skip("user nobody cannot import the package here")
    before = snapshot(tmp_path)
    r = subprocess.run([*as_nobody, sys.executable, "-m", "search.cli", "run", str(space),
                        "--output", str(shared / "out")], capture_output=True, text=True,
                       env=_env({}), cwd="/", timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert f"--output {shared / 'out'}: permission denied" in lines[0]
    assert snapshot(tmp_path) == before
    shutil.rmtree(tmp_path)
