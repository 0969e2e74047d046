"""`search resume NAME`: continue a run that was interrupted or whose driver was killed."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "resume"
HELP = ("continue the last run of a search after Ctrl-C or a killed driver: unfinished trials "
        "resume from their checkpoints, finished ones are not run again")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from search.commands.run import add_common

    parser.add_argument("name", metavar="NAME",
                        help="the space's name, its YAML file, or the output folder of its runs")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from search.cluster.connect import local_token

    local_token(args.address)  # before Ray is imported
    from search.lifecycle.precheck import check_options, check_ray
    from search.lifecycle.runs import locate

    check_options(args)
    if args.address:
        check_ray(args.address, "--address")
    import optuna

    from search.commands.run import options_from, report, then_stages
    from search.lifecycle.runner import resume_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, output, _ = locate(args.name, args.output)
    from search.lifecycle.usercode import importable_from_cwd

    importable_from_cwd(unless_inside=Path(output))  # the user's code, as `search run` took it
    outcome = resume_search(output, options_from(args))
    return then_stages(args, outcome, report(outcome, outcome.objectives))
