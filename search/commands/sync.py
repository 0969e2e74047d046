"""`search sync NAME`: replay the MLflow writes a search spooled while its backend was away."""
from __future__ import annotations

import argparse

from search.commands import add_search_arguments

NAME = "sync"
HELP = "send to MLflow what a search spooled while its tracking backend was unreachable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser, optional=True, storage=False)
    parser.add_argument("--run", metavar="RUN_ID", help="only this search run (default: all "
                        "runs of the folder with a spool)")
    parser.add_argument("--tracking-uri", metavar="URI", help="send to this backend instead of "
                        "the one the search used")


def run(args: argparse.Namespace) -> int:
    from search.tracking.backend import redact
    from search.tracking.factory import output_folder, sync

    output = output_folder(args.name, args.output)
    done = sync(output, tracking_uri=args.tracking_uri, run_id=args.run)
    if not done:
        print(f"{output}: nothing to sync (no spooled writes)")
        return 0
    left_total = 0
    for settings, applied, left in done:
        left_total += left
        tail = "done" if not left else f"{left} still waiting (backend unreachable again)"
        print(f"{settings.run_id}: {applied} spooled writes sent to {redact(settings.uri)}; "
              f"{tail}")
    return 1 if left_total else 0
