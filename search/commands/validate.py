"""`search validate FILE [FILE ...]`: check space files and print each as a readable tree."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

USER_CODE = True  # imports the space's factories and fit from the current folder (cli.py)
NAME = "validate"
HELP = ("check space files (and import the fit function and factories they name, to check "
        "their signatures); print each resolved space as a tree (fixed settings that differ "
        "from the defaults, searched parameters with their domains, branches); exit 2 if any "
        "is invalid")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="space YAML files")


def run(args: argparse.Namespace) -> int:
    from search.errors import UserError, one_line
    from search.lifecycle import preflight
    from search.lifecycle.usercode import DEFAULT_FIT, check_user_code, space_fit
    from spaces import SpaceError, load_space
    from trainers.errors import TrainerError

    failed = 0
    for i, path in enumerate(args.files):
        try:
            space = load_space(Path(path), filename=path)  # a path, newline or not
            check_user_code(space)  # imports (never runs) the fit function and factories
            preflight.check_devices(space)
            if space_fit(space) == DEFAULT_FIT:  # the built-in trainer tries the factories once
                preflight.check_user_code(space)
        except (SpaceError, UserError, TrainerError) as err:
            text = str(err) if isinstance(err, SpaceError) else f"{path}: {err}"
            print(f"error: {one_line(text)}", file=sys.stderr)
            failed += 1
            continue
        print(("\n" if i else "") + space.describe())
    return SpaceError.exit_code if failed else 0
