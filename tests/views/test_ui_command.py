"""`search ui` on a finished search that was copied elsewhere and its original deleted: links
straight to the runs (model-training view), the parent, the best trial and the registered
model; the copy's own runs and artifacts; and no server left once the command ends, however it
is stopped."""
from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from views_helpers import MODEL, NAME, serve

# the first test here also waits for the session's search (tests/views/conftest.py): ~40 s on
# a quiet machine, ten times that on a loaded one
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
ML_VIEW = "?workflowType=machine_learning"


def api(base: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_ui_prints_deep_links_into_the_model_training_view(ui, searched):
    base = f"http://127.0.0.1:{ui.port}"
    exp = api(base, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={NAME}")
    exp = exp["experiment"]
    tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
    assert tags.get("mlflow.experimentKind") == "custom_model_development"
    runs = f"{base}/#/experiments/{exp['experiment_id']}/runs"
    main = next(line for line in ui.lines if line.startswith("MLflow UI: "))
    assert main == f"MLflow UI: {runs}{ML_VIEW}"  # lands on the runs, not the GenAI overview
    found = api(base, "/api/2.0/mlflow/runs/search",
                {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]
    parent = next(r["info"]["run_id"] for r in found if _tags(r).get("search.key") == "parent")
    assert ui.link("search run ") == f"{runs}/{parent}{ML_VIEW}"
    best = searched.study().best_trial
    assert ui.link(f"best trial #{best.number}") == \
        f"{runs}/{best.user_attrs['mlflow_run_id']}{ML_VIEW}"
    model = api(base, f"/api/2.0/mlflow/registered-models/get?name={MODEL}")["registered_model"]
    version = {a["alias"]: a["version"] for a in model["aliases"]}["best"]
    assert ui.link(f"registered model {MODEL}") == f"{base}/#/models/{MODEL}{ML_VIEW}"
    assert ui.link(f"alias best: version {version}") == \
        f"{base}/#/models/{MODEL}/versions/{version}{ML_VIEW}"
    assert ui.lines[-1].endswith(f"search dashboard --output {searched.folder}")


def test_a_copied_folder_shows_its_own_runs_and_artifacts(ui, searched):
    """The search ran in `original`, since deleted; the UI reads the copy, rebased once."""
    assert not searched.original.exists()
    assert any(f"moved or copied from {searched.original.as_uri()}/mlartifacts" in line
               for line in ui.lines), ui.lines
    base = f"http://127.0.0.1:{ui.port}"
    exp = api(base, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={NAME}")
    assert exp["experiment"]["artifact_location"] == (searched.folder / "mlartifacts").as_uri()
    runs = api(base, "/api/2.0/mlflow/runs/search",
               {"experiment_ids": [exp["experiment"]["experiment_id"]]})["runs"]
    # the parent, every trial, the `stages` run and its two stages (0-best, 1-quantize)
    assert len(runs) == 1 + len(searched.study().trials) + 3
    for run in runs:
        assert run["info"]["artifact_uri"].startswith(searched.folder.as_uri() + "/"), run
    parent = next(r for r in runs if _tags(r).get("search.key") == "parent")
    url = f"{base}/get-artifact?path=space.yaml&run_uuid={parent['info']['run_id']}"
    with urllib.request.urlopen(url, timeout=60) as response:
        assert f"name: {NAME}" in response.read().decode()  # served from the copy
    model = api(base, f"/api/2.0/mlflow/registered-models/get?name={MODEL}")
    version = model["registered_model"]["latest_versions"][0]
    assert searched.original.as_uri() not in json.dumps(version)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry))
    return found


def _group(pgid: int) -> list[int]:
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry))
    return alive


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_server_dies_with_the_command(searched):
    """SIGTERM, SIGINT (Ctrl-C) and SIGKILL to `search ui`: no mlflow server, uvicorn or
    worker is left, and the port is free. The three run side by side."""
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGKILL)
    served = [serve(["ui", "--output", str(searched.folder)], "the study in optuna-dashboard",
                    searched.folder.parent) for _ in signals]
    groups = {}
    for s in served:
        servers = [pid for pid in _children(s.proc.pid)
                   if b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(servers) == 1, servers
        groups[s.port] = os.getpgid(servers[0])
        assert groups[s.port] != os.getpgid(s.proc.pid)  # its own group: Ctrl-C reaches us
        assert len(_group(groups[s.port])) >= 2  # mlflow server and its uvicorn
        assert _listening(s.port)
    for s, sig in zip(served, signals):
        s.proc.send_signal(sig)
    for s, sig in zip(served, signals):
        code = s.proc.wait(timeout=120)
        assert code == (-9 if sig == signal.SIGKILL else 0), (sig, code, s.lines[-10:])
        deadline = time.monotonic() + 60
        while (_group(groups[s.port]) or _listening(s.port)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _group(groups[s.port]), (sig.name, _group(groups[s.port]))
        assert not _listening(s.port), sig.name
