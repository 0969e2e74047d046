"""deploy/k8s/start-search.sh, the CronJob's script, run by a POSIX sh against a stand-in `kubectl`
(no Kubernetes here) that plays back RayJob states and records every call."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_checks import K8S

SCRIPT = K8S / "start-search.sh"
SH = shutil.which("dash") or shutil.which("sh")

# The stand-in: `create` prints a new name, `get NAME -o jsonpath={.status.X}` prints the next
# state of X from the scenario, `get rayjobs -l ...` lists the scenario's existing RayJobs.
FAKE_KUBECTL = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
scenario_path = os.environ["FAKE_SCENARIO"]
scenario = json.load(open(scenario_path))
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[0] == "create":
    if scenario.get("create_fails"):
        sys.exit(1)
    print("rayjob.ray.io/torch-search-run-x1y2z")
elif args[0] == "get" and args[1].startswith("rayjob.ray.io/"):
    field = args[-1].split(".status.")[1].rstrip("}}")
    states = scenario[field]
    value = states.pop(0) if len(states) > 1 else states[0]
    json.dump(scenario, open(scenario_path, "w"))
    if value == "ERROR":
        sys.exit(1)
    print(value, end="")
elif args[0] == "get" and "-l" in args:
    print("\\n".join(scenario.get("existing", [])))
elif args[0] == "delete":
    pass
else:
    sys.exit(f"fake kubectl: unexpected {{args}}")
"""


@pytest.fixture()
def run_script(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    template = tmp_path / "rayjob.yaml"
    template.write_text((K8S / "rayjob.yaml").read_text())
    log = tmp_path / "calls.jsonl"

    def run(scenario: dict, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
        (tmp_path / "scenario.json").write_text(json.dumps(scenario))
        environment = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log),
            "FAKE_SCENARIO": str(tmp_path / "scenario.json"), "RAYJOB_TEMPLATE": str(template),
            "POLL_SECONDS": "0", "KEEP_RAYJOBS": "2", **env,
        }
        done = subprocess.run([SH, str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=60)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return done, calls

    return run


def test_script_is_valid_posix_shell() -> None:
    subprocess.run([SH, "-n", str(SCRIPT)], check=True)


def test_success_waits_for_the_end_and_prunes_old_rayjobs(run_script) -> None:
    existing = [f"rayjob.ray.io/torch-search-run-{i}" for i in "abc"] + ["rayjob.ray.io/torch-search-run-x1y2z"]
    done, calls = run_script({"jobDeploymentStatus": ["Initializing", "Running", "Running", "Complete"],
                              "jobStatus": ["SUCCEEDED"], "existing": existing})
    assert done.returncode == 0, done.stderr
    assert "created rayjob.ray.io/torch-search-run-x1y2z" in done.stdout
    assert "job SUCCEEDED" in done.stdout
    polls = [c for c in calls if "jsonpath={.status.jobDeploymentStatus}" in c]
    assert len(polls) == 4, "polls until Complete"
    assert calls[0][:2] == ["create", "-f"]
    # Newest two kept (sorted by creation time): the oldest two are deleted, in one call.
    assert ["delete", existing[0], existing[1]] in calls
    assert all(c[0] in ("create", "get", "delete") for c in calls)


def test_a_failed_ray_job_fails_the_cronjob_run(run_script) -> None:
    done, calls = run_script({"jobDeploymentStatus": ["Running", "Failed"], "jobStatus": ["FAILED"]})
    assert done.returncode == 1
    assert "ended with job status 'FAILED'" in done.stderr
    assert "kubectl logs -l job-name=torch-search-run-x1y2z" in done.stderr
    assert not [c for c in calls if c[0] == "delete"], "nothing to prune"


def test_a_transient_api_error_is_retried(run_script) -> None:
    done, _ = run_script({"jobDeploymentStatus": ["ERROR", "Running", "Complete"], "jobStatus": ["SUCCEEDED"]})
    assert done.returncode == 0, done.stderr


def test_waiting_is_bounded(run_script) -> None:
    done, _ = run_script({"jobDeploymentStatus": ["Running"], "jobStatus": ["RUNNING"]}, WAIT_SECONDS="0")
    assert done.returncode == 1 and "still 'Running' after" in done.stderr


def test_missing_template_and_failed_create_end_with_one_line(run_script, tmp_path: Path) -> None:
    done, calls = run_script({}, RAYJOB_TEMPLATE=str(tmp_path / "missing.yaml"))
    assert done.returncode == 1 and calls == []
    assert done.stderr.strip().count("\n") == 0 and "torch-search-rayjob-template" in done.stderr
    done, _ = run_script({"create_fails": True})
    assert done.returncode == 1 and "could not create a RayJob" in done.stderr
