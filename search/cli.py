"""`search`: the command line. Thin: it parses arguments and delegates to library functions.

Each subcommand lives in its own module under search/commands/ exposing
    NAME: str, HELP: str, add_arguments(parser) -> None, run(args) -> int
and is listed in COMMANDS below.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order `search --help` lists them.
COMMANDS = [
    "search.commands.validate",
    "search.commands.sample",
    "search.commands.train",
    "search.commands.run",
    "search.commands.resume",
    "search.commands.submit",
    "search.commands.status",
    "search.commands.best",
    "search.commands.stages",
    "search.commands.ui",
    "search.commands.dashboard",
    "search.commands.sync",
]


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line said as every user's mistake is: one line
    naming the flag and the rule, exit 2 (argparse prints its usage over several lines).
    Subcommands' parsers are of this class too (add_subparsers copies it)."""

    def error(self, message: str):
        from search.errors import one_line

        self.exit(2, f"error: {self.prog}: {one_line(message)}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="search",
        description="Declarative hyperparameter search for PyTorch image classifiers: "
                    "write a space YAML file, then `search run space.yaml`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _user_code=getattr(module, "USER_CODE", False))
    return parser


def main(argv: list[str] | None = None) -> int:
    from search.errors import UserError, one_line

    args = build_parser().parse_args(argv)
    try:
        from search.urls import use_password_file

        use_password_file(getattr(args, "storage_password_file", None))
        if args._user_code:  # a space file of the user's: its code where it is run
            from search.lifecycle.usercode import importable_from_cwd

            importable_from_cwd()
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
