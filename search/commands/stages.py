"""`search stages NAME`: the space's `stages:` (finetune, distill, quantize) on a finished
search's best checkpoint; `search run` does the same when its search ends."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.commands import add_search_arguments
from search.commands.values import MAX_CPUS, whole

NAME = "stages"
HELP = ("run the space's stages (finetune, distill, quantize) on the best checkpoint of a "
        "finished search, resuming after the last finished stage; prints the stage table")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser)
    parser.add_argument("--run", metavar="RUN_ID",
                        help="this run of the search (a run-YYYYmmdd-HHMMSS folder) instead of "
                             "the newest: its space's stages, its best trial so far")
    parser.add_argument("--restart", action="store_true",
                        help="run every stage again instead of resuming after the last "
                             "finished one")
    parser.add_argument("--cpus", type=whole(1, MAX_CPUS), metavar="N",
                        help="CPU threads for training stages (default: the run's --cpus, "
                             "else all)")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow backend (default: the one the search used)")


def run(args: argparse.Namespace) -> int:
    from search.cluster.connect import local_token
    from search.lifecycle.runs import locate

    if args.tracking_uri:  # said before the stages are looked for
        from search.tracking.backend import normalise

        normalise(args.tracking_uri, "--tracking-uri")
    _, output, _ = locate(args.name, args.output, args.storage)
    from search.lifecycle.usercode import importable_from_cwd

    importable_from_cwd(unless_inside=Path(output))  # a factory model's code, as resume
    local_token(_address(output, args.run))  # before Ray is imported
    return run_and_print(output, args.run, restart=args.restart, cpus=args.cpus,
                         tracking_uri=args.tracking_uri, storage=args.storage)


def _address(output, run_id: str | None) -> str | None:
    """The Ray address the run joined (its stages join it too), None for a local Ray."""
    from search.lifecycle.runs import read_run_file, runs_of

    folders = [output / run_id] if run_id else runs_of(output)[-1:]
    try:
        return (read_run_file(folders[0]).get("options") or {}).get("address") \
            if folders else None
    except (OSError, ValueError):
        return None


def run_and_print(output, run_id: str | None = None, **options) -> int:
    """Run the stages, print the table; a stage that broke ends in one line and exit 1 (a
    user's mistake raises on, to exit 2), with everything finished before it kept."""
    from search.stages import StageFailed, run_stages, summary_text

    try:
        outcome = run_stages(output, run_id, **options)
    except StageFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(summary_text(outcome))
    return 0
