"""`search validate FILE [FILE ...]`: check space files and print each as a readable tree."""
from __future__ import annotations

import argparse
import sys

NAME = "validate"
HELP = ("check space files; print each resolved space as a tree (fixed settings that differ "
        "from the defaults, searched parameters with their domains, branches); exit 2 if any "
        "is invalid")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="space YAML files")


def run(args: argparse.Namespace) -> int:
    from spaces import SpaceError, load_space

    failed = 0
    for i, path in enumerate(args.files):
        try:
            space = load_space(path, filename=path)
        except SpaceError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        print(("\n" if i else "") + space.describe())
    return SpaceError.exit_code if failed else 0
