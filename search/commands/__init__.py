"""Subcommands of `search`; see search/cli.py. Helpers shared by the commands that read a
finished or running search (status, best)."""
from __future__ import annotations

import argparse


def add_search_arguments(parser: argparse.ArgumentParser, *, optional: bool = False,
                         storage: bool = True) -> None:
    """NAME plus where its runs (and, with `storage`, its study) live; an `optional` NAME may
    be left out when --output (or, for `ui`, a tracking URI) says where."""
    parser.add_argument("name", metavar="NAME", nargs="?" if optional else None,
                        help="the space's name, its YAML file, or the output folder of its runs")
    parser.add_argument("--output", metavar="DIR", help="folder of the runs (default "
                        "./runs/<name>)")
    if storage:
        parser.add_argument("--storage", metavar="URL", help="study database (default: the "
                            "one the last run used)")
        add_password_file(parser)


def add_password_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage-password-file", metavar="FILE",
                        help="the study database's password, on the first line of FILE (else "
                             "$PGPASSWORD, ~/.pgpass, or the password in $SEARCH_STORAGE); "
                             "runs record their URLs with the password masked")


def open_search(args: argparse.Namespace):
    """(study name, output folder, the Optuna study) of the search the arguments name."""
    import optuna

    from search.studies import study as studies
    from search.lifecycle.runs import locate

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name, output, url = locate(args.name, args.output, args.storage)
    storage = studies.open_storage(url)
    # a change of the space may have moved the search on to a successor study (warmstart.py)
    return name, output, studies.load_study(storage, studies.current_name(storage, name))
