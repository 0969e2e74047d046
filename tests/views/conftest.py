"""What a user sees of a finished search: one small real search (`search run` on the real
trainer, tracked, its best model registered), run once per session, then copied to another
folder and the original deleted, as a user who moves a run folder would; `search ui` and
`search dashboard` serve the copy."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from views_helpers import HERE, NAME, SPACE, Served, env, serve


RAY_SLOW_START = "The current node timed out during startup"


@dataclass
class Search:
    folder: Path          # the copy every test looks at (the original is deleted)
    original: Path
    stdout: str
    stderr: str
    first: dict           # what the console driver noted at the first write
    seconds: float        # wall time of `search run`

    def study(self):
        from search.studies import study as studies

        storage = studies.open_storage(f"sqlite:///{self.folder / 'study.db'}")
        return studies.load_study(storage, NAME)


@pytest.fixture(scope="session")
def searched(tmp_path_factory) -> Search:
    tmp = tmp_path_factory.mktemp("views")
    (tmp / "space.yaml").write_text(SPACE)
    for attempt in range(3):
        original, record = tmp / f"searched-{attempt}", tmp / f"first-write-{attempt}.json"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(HERE / "_console_driver.py"), str(record), "run",
             str(tmp / "space.yaml"), "--output", str(original), "--cpus", "2", "--plain"],
            capture_output=True, text=True, env=env(), cwd=tmp, timeout=900)
        seconds = time.monotonic() - started
        # Ray gives its raylet a fixed 30 s to register: a machine shared by many Ray
        # clusters misses that now and then, which says nothing about what is tested here
        if RAY_SLOW_START not in done.stderr:
            break
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = tmp / "moved-here"
    shutil.copytree(original, folder)
    shutil.rmtree(original)
    return Search(folder, original, done.stdout, done.stderr, json.loads(record.read_text()),
                  seconds)


@pytest.fixture(scope="session")
def ui(searched) -> Served:
    served = serve(["ui", "--output", str(searched.folder)], "the study in optuna-dashboard",
                   searched.folder.parent)
    yield served
    served.stop()


@pytest.fixture(scope="session")
def dashboard(searched) -> Served:
    served = serve(["dashboard", "--output", str(searched.folder)], f"  study {NAME}:",
                   searched.folder.parent)
    yield served
    served.stop()
