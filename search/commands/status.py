"""`search status NAME`: trials by state, the best value, and whether a run is going on;
`search status JOB --address URL`: a search submitted as a Ray Job (search/cluster/submit.py)."""
from __future__ import annotations

import argparse

from search.commands import add_search_arguments, open_search
from search.commands.values import MAX_LINES, whole

NAME = "status"
HELP = ("show a search's trials by state, its best value, and whether its last run is running; "
        "with --address, the state and log of a job `search submit` sent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser)
    jobs = parser.add_argument_group("a submitted job (NAME is its id, raysubmit_...)")
    jobs.add_argument("--address", metavar="URL",
                      help="the cluster's Ray dashboard, e.g. http://HEAD:8265 (default for "
                           "raysubmit_ ids: $RAY_API_SERVER_ADDRESS)")
    jobs.add_argument("--follow", action="store_true",
                      help="print the job's log as it grows until it ends")
    jobs.add_argument("--lines", type=whole(0, MAX_LINES), default=20, metavar="N",
                      help="lines of the job's log to show (default 20)")


def run(args: argparse.Namespace) -> int:
    from search.cluster.submit import JOB_PREFIX

    if args.address or args.name.startswith(JOB_PREFIX):
        return job(args)
    from search.lifecycle.plan import Objective
    from search.lifecycle.runs import read_run_file, runs_of, unfinished
    from search.lifecycle.summary import status_text

    _, output, study = open_search(args)
    runs = []
    folders = runs_of(output)
    for folder in folders:
        info = read_run_file(folder)
        left = unfinished(info)
        if left in ("search", "stages") and folder == folders[-1]:  # what resume continues
            what = "its search" if left == "search" else "its stages"
            info["state"] = f"stopped before {what} ended (`search resume` continues it)"
        elif left == "search":  # an older run: resume takes the newest only
            info["state"] = "stopped (driver gone)"
        runs.append(info)
    metrics = study.metric_names or ["objective"] * len(study.directions)
    objectives = [Objective(m, d.name.lower()) for m, d in zip(metrics, study.directions)]
    print(status_text(study, objectives, runs))
    return 0


def job(args: argparse.Namespace) -> int:
    """The job's state line and log tail; with --follow its log until it ends (exit 0 when it
    succeeded, 1 otherwise)."""
    from search.cluster.submit import describe, follow, job_status

    if args.follow:
        info = follow(args.address, args.name)
        print(describe(info))
        return 0 if info.status.value == "SUCCEEDED" else 1
    info, tail = job_status(args.address, args.name, max(args.lines, 0))
    print(describe(info))
    if tail:
        print(f"--- last {args.lines} lines of its log ---\n{tail}")
    return 0
