"""The hostile-input corpus (hostile_cases.py, tests/data/hostile/): every case ends in one line
`error: ...` naming the file or flag and the rule, exit 2, in under 10 s, with no traceback and
nothing created on disk (the working folder and the output folder stay empty).

Cases run in-process through the command line's main() (a watchdog alarm turns a hang into a
failure); a handful run as real subprocesses, as a user starts them."""
from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostile_cases import space_cases
from search.cli import main

ROOT = Path(__file__).parents[2]
LIMIT_S = 10
SPACES = space_cases()
# `search run` reads a space file with the same load_space (run in-process it would set Ray's
# environment for the rest of the session); command lines: tests/search/commands/test_hostile_flags.py.
RUN_TOO: set[str] = set()


def test_the_corpus_is_large_and_varied():
    ids = [c.id for c in SPACES]
    assert len(ids) == len(set(ids))
    assert len(SPACES) + len(RUN_TOO) >= 150


class Hang(Exception):
    pass


def cli(argv: list[str]) -> tuple[int, str, str, float]:
    """main(argv) with stdout/stderr captured; SystemExit is an exit code; a hang past the
    limit raises Hang."""
    out, err = io.StringIO(), io.StringIO()

    def alarm(*_):
        raise Hang(f"no answer in {LIMIT_S} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(LIMIT_S)
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, out.getvalue(), err.getvalue(), time.monotonic() - start


def one_line_exit_2(code, out, err, seconds, expect: str, names: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, out[-500:], err[-2000:])
    assert "Traceback" not in err and "Traceback" not in out
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith("error: "), lines[0]
    assert names in lines[0], (names, lines[0])
    assert expect in lines[0], (expect, lines[0])
    assert len(lines[0]) < 1000 + len(names), lines[0][:200]
    assert seconds < LIMIT_S


@pytest.fixture
def places(tmp_path, monkeypatch):
    """(inputs folder, empty working folder, output folder that must stay absent)."""
    inputs, cwd = tmp_path / "in", tmp_path / "cwd"
    inputs.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("SEARCH_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield inputs, cwd, tmp_path / "out"
    assert sorted(os.listdir(cwd)) == [], "something was created in the working folder"
    assert not (tmp_path / "out").exists(), "the output folder was created"


def _cases():
    for case in SPACES:
        yield pytest.param(case, "validate", id=f"validate-{case.id}")
        if case.id in RUN_TOO:
            yield pytest.param(case, "run", id=f"run-{case.id}")


@pytest.mark.parametrize("case, command", list(_cases()))
def test_a_hostile_space_file_is_one_line(case, command, places):
    inputs, cwd, out = places
    argv = case.make(inputs)
    extra = ["--output", str(out)] if command == "run" else []
    result = cli([command, *argv, *extra])
    shown = str(Path(argv[0])) if argv[0] else "."
    names = shown if "\x00" not in shown else ""
    one_line_exit_2(*result, case.expect, names)


def test_python_tags_construct_nothing(places, tmp_path):
    marker = Path("/tmp/input13-pwned")
    marker.unlink(missing_ok=True)
    path = ROOT / "tests" / "data" / "hostile" / "python_object_apply.yaml"
    one_line_exit_2(*cli(["validate", str(path)]), "tag", str(path))
    assert not marker.exists()


def _subprocess(argv: list[str], cwd: Path, user: str | None = None) -> tuple[int, str, str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("SEARCH_STORAGE", "RAY_ADDRESS")}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "search.cli", *argv]
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *cmd]
    start = time.monotonic()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=LIMIT_S + 20)
    return r.returncode, r.stdout, r.stderr, time.monotonic() - start - 3  # the imports


def test_an_unreadable_file_is_one_line(tmp_path):
    """As an ordinary user (root reads everything): a file they may not read."""
    if os.geteuid() != 0 or subprocess.run(["which", "setpriv"], capture_output=True).returncode:
        pytest.skip("needs root and setpriv to act as another user")
    from hostile_cases import BASE

    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / "secret.yaml"
    path.write_text(BASE)
    path.chmod(0o000)
    for p in (tmp_path, folder):
        p.chmod(0o755)
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            sys.executable, "-c", "import search"], capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd="/")
    if probe.returncode:
        pytest.skip("user nobody cannot import the package here")
    one_line_exit_2(*_subprocess(["validate", str(path)], Path("/"), user="nobody"),
                    "permission denied", str(path))
