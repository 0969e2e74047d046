"""A search sent to a Ray cluster as a Ray Job (`search submit`), and following it (`search
status JOB --address ...`).

The job's driver runs `python -m search.cli run` on the head node of the cluster, from a
temporary working directory that holds only the space file (uploaded with the job's
`runtime_env`, deleted by Ray), with the user's own modules (`--fit`, factories) found on this
machine: packages in the job's `py_modules`, single-file modules beside the space file
(search/cluster/shipping.py); every worker of the job inherits both. The cluster decides the rest: its
nodes need the package (the images of deploy/), the study database ($SEARCH_STORAGE) and MLflow
($MLFLOW_TRACKING_URI), either from their environment or from the flags forwarded here, and
`--output` (required) names a folder every node shares. Ray sets $RAY_ADDRESS for the
job's driver, so `search run` joins the cluster by itself.
"""
from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from search.errors import UserError

JOB_PREFIX = "raysubmit_"  # what Ray's job ids start with unless the submitter names them
# `search run` flags passed through to the job, as (option, takes a value).
FORWARDED = (("--output", True), ("--storage", True), ("--tracking-uri", True),
             ("--fit", True), ("--retries", True), ("--warm-start", True), ("--new", False))


def dashboard_url(address: str | None) -> str:
    """The job server's URL: `http://HEAD:8265` (a bare HEAD:PORT gets http://)."""
    import os

    address = (address or os.environ.get("RAY_API_SERVER_ADDRESS") or "").strip()
    if not address:
        raise UserError("--address: give the Ray dashboard of the cluster, e.g. "
                        "--address http://HEAD:8265 (or set $RAY_API_SERVER_ADDRESS)")
    if "://" not in address:
        address = f"http://{address}"
    if not address.startswith(("http://", "https://")):
        raise UserError(f"--address {address}: the job server speaks HTTP; give the Ray "
                        "dashboard's URL, e.g. http://HEAD:8265")
    return address


def client(address: str | None):
    """A JobSubmissionClient for the cluster; a UserError in seconds when nobody answers."""
    from ray.job_submission import JobSubmissionClient

    url = dashboard_url(address)
    try:
        return JobSubmissionClient(url)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--address {url}: no Ray job server answers there ({first}); check "
                        "that the head's dashboard runs (`ray start --head` with ray[default]) "
                        "and listens on that host and port (default 8265)") from None


def forwarded_flags(values: dict[str, Any]) -> list[str]:
    """`search run` flags from {"--output": "/data/runs", "--new": True, ...}; unset skipped."""
    argv: list[str] = []
    for option, takes_value in FORWARDED:
        value = values.get(option)
        if value is None or value is False:
            continue
        argv += [option, str(value)] if takes_value else [option]
    return argv


def entrypoint(space_file: str, flags: list[str]) -> str:
    """The job's shell command: `search run` on the uploaded space file, log lines only, run
    as a module by the head's `python` (the interpreter that has Ray and this package), so no
    `search` script need be on the head's PATH."""
    return shlex.join(["python", "-m", "search.cli", "run", space_file, "--plain", *flags])


def check_output(output: str | None) -> None:
    """A job runs in a temporary working folder on the head that Ray deletes with the session:
    its runs (study, Tune folders, MLflow files) must go to a folder every node shares."""
    if not output:
        raise UserError("submit: give --output DIR, an absolute folder every node of the "
                        "cluster shares (e.g. /data/runs); without it the job's runs would land "
                        "in its temporary working folder on the head, which Ray deletes")
    if not Path(output).is_absolute():
        raise UserError(f"--output {output}: the job runs in a temporary folder on the head; "
                        "give an absolute path that every node of the cluster shares")


def submit(space_path: str | Path, address: str | None, flags: dict[str, Any], *,
           job_id: str | None = None) -> tuple[str, str]:
    """Send `search run SPACE` to the cluster as a Ray Job: (job id, dashboard URL)."""
    from search.cluster.shipping import job_runtime_env
    from spaces import load_space

    path = Path(space_path)
    space = load_space(str(path), filename=str(path))  # a bad space fails here, not there
    check_output(flags.get("--output"))
    jobs = client(address)
    folder = Path(tempfile.mkdtemp(prefix="search-submit-"))
    try:
        shutil.copy2(path, folder / path.name)
        env = job_runtime_env(space, flags.get("--fit"), folder)
        try:
            job = jobs.submit_job(
                entrypoint=entrypoint(path.name, forwarded_flags(flags)),
                runtime_env=env, submission_id=job_id,
                metadata={"search.space": space.name, "search.space_file": path.name})
        except (RuntimeError, ValueError) as err:
            raise UserError(f"submit: the job server refused the job ({_first(err)})") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return job, dashboard_url(address)


def job_status(address: str | None, job_id: str, lines: int = 20) -> tuple[Any, str]:
    """(JobDetails, the last `lines` lines of its log) of a submitted job."""
    jobs = client(address)
    info = _info(jobs, job_id, address)
    logs = jobs.get_job_logs(job_id)
    return info, "\n".join(logs.rstrip("\n").splitlines()[-lines:]) if lines else ""


def describe(info: Any) -> str:
    """One line: the job, its state, since when, and Ray's message."""
    def at(ms):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"

    space = (info.metadata or {}).get("search.space", "?")
    text = f"job {info.submission_id or info.job_id}: {info.status.value} (space {space}; " \
           f"started {at(info.start_time)}"
    text += f", ended {at(info.end_time)})" if info.end_time else ")"
    return text + (f": {info.message}" if info.message else "")


def follow(address: str | None, job_id: str, stream: TextIO | None = None,
           poll: float = 2.0) -> Any:
    """Print the job's log as it grows until the job ends; returns its final JobDetails."""
    stream = stream or sys.stdout
    jobs = client(address)
    shown = 0
    while True:
        info = _info(jobs, job_id, address)
        logs = jobs.get_job_logs(job_id)
        if len(logs) > shown:
            stream.write(logs[shown:])
            stream.flush()
            shown = len(logs)
        if info.status.is_terminal():
            return info
        time.sleep(poll)


def _info(jobs, job_id: str, address: str | None):
    try:
        return jobs.get_job_info(job_id)
    except RuntimeError as err:
        if "404" not in str(err) and "does not exist" not in str(err):
            raise UserError(f"job {job_id}: the job server failed ({_first(err)})") from None
    known = [j.submission_id for j in jobs.list_jobs() if j.submission_id]
    have = ", ".join(known[-5:]) or "none"
    raise UserError(f"job {job_id}: no such job at {dashboard_url(address)}; its latest jobs: "
                    f"{have}")


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
