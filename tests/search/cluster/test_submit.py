"""`search submit` to the real job server of the two-node cluster's head, `search status JOB`
following it, and the mistakes that end in one line."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from cluster_helpers import FIT, MLFLOW_URI, PG_URL, search, space_yaml
from search.cluster.submit import entrypoint, forwarded_flags


def test_the_job_runs_search_run_on_the_uploaded_file_with_the_forwarded_flags():
    flags = forwarded_flags({"--output": "/data/runs", "--storage": "$SEARCH_STORAGE",
                             "--new": True, "--retries": None, "--warm-start": 0,
                             "--fit": None, "--tracking-uri": None})
    assert entrypoint("my space.yaml", flags) == (
        "python -m search.cli run 'my space.yaml' --plain --output /data/runs "
        "--storage '$SEARCH_STORAGE' --warm-start 0 --new")


def test_a_job_without_an_output_is_refused_before_it_is_sent(tmp_path):
    """Its runs would land in Ray's temporary package folder of the job, deleted with it."""
    path = tmp_path / "space.yaml"
    path.write_text(space_yaml("no-output"))
    done = search("submit", str(path), "--address", "http://127.0.0.1:9", timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: submit: give --output DIR, an absolute folder")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("address, says", [
    ("http://127.0.0.1:9", "--address http://127.0.0.1:9: no Ray job server answers there"),
    ("ray://head:10001", "--address ray://head:10001: the job server speaks HTTP"),
])
def test_a_bad_address_is_one_line_and_exit_2(tmp_path, address, says):
    path = tmp_path / "space.yaml"
    path.write_text(space_yaml("bad-address"))
    for argv in (["submit", str(path), "--address", address, "--output", "/data/runs"],
                 ["status", "raysubmit_x", "--address", address]):
        done = search(*argv, timeout=60)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.startswith(f"error: {says}") and done.stderr.count("\n") == 1


@pytest.mark.postgres
@pytest.mark.slow
def test_a_submitted_search_runs_on_the_cluster_and_status_follows_it(two_nodes, pg, tmp_path):
    name = pg.name("submitted")
    path = tmp_path / "space.yaml"
    path.write_text(space_yaml(name, trials=2))
    sent = search("submit", str(path), "--address", two_nodes.dashboard, "--storage", PG_URL,
                  "--tracking-uri", MLFLOW_URI, "--output", str(tmp_path / "runs"),
                  "--fit", FIT, timeout=120)
    assert sent.returncode == 0, sent.stderr[-3000:]
    job = sent.stdout.splitlines()[0]
    assert job.startswith("raysubmit_")
    from ray.job_submission import JobSubmissionClient

    # the head's own interpreter runs the package: no `search` script needed on its PATH
    assert JobSubmissionClient(two_nodes.dashboard).get_job_info(job).entrypoint.startswith(
        "python -m search.cli run space.yaml --plain")
    assert f"search status {job} --address {two_nodes.dashboard}" in sent.stdout

    followed = search("status", job, "--address", two_nodes.dashboard, "--follow")
    assert followed.returncode == 0, followed.stdout[-3000:] + followed.stderr[-3000:]
    assert f"top trials of study {name}" in followed.stdout  # the job's own log
    assert followed.stdout.splitlines()[-1].startswith(f"job {job}: SUCCEEDED (space {name};")

    status = search("status", job, "--address", two_nodes.dashboard, "--lines", "5")
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert lines[0].startswith(f"job {job}: SUCCEEDED") and len(lines) <= 7
    assert "best: trial #" in status.stdout

    trials = optuna.load_study(study_name=name, storage=pg.storage).trials
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    assert (tmp_path / "runs" / trials[0].user_attrs["run_id"] / "search_run.json").is_file()

    unknown = search("status", "raysubmit_nope", "--address", two_nodes.dashboard)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: job raysubmit_nope: no such job at ")
    assert job in unknown.stderr  # the latest jobs are listed
