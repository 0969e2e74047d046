"""`search status NAME`: trials by state, the best value, and whether a run is going on."""
from __future__ import annotations

import argparse

from search.commands import add_search_arguments, open_search

NAME = "status"
HELP = "show a search's trials by state, its best value, and whether its last run is running"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from search.plan import Objective
    from search.runs import driver_alive, read_run_file, runs_of
    from search.summary import status_text

    name, output, study = open_search(args)
    runs = []
    for folder in runs_of(output):
        info = read_run_file(folder)
        if info.get("state") == "running" and not driver_alive(info):
            info["state"] = "stopped (driver gone; `search resume` continues it)"
        runs.append(info)
    metrics = study.metric_names or ["objective"] * len(study.directions)
    objectives = [Objective(m, d.name.lower()) for m, d in zip(metrics, study.directions)]
    print(status_text(study, objectives, runs))
    return 0
