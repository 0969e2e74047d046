"""`search sample FILE -n 5 --seed 0`: fully resolved trial configs, as YAML documents.

Optuna's RandomSampler(seed) on an in-memory study drives the space's define-by-run function,
so the same seed prints the same configs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from search.commands.values import MAX_SAMPLES, MAX_SEED, whole

USER_CODE = True  # imports the space's factories and fit from the current folder (cli.py)
NAME = "sample"
HELP = ("print N trial configs drawn at random from a space (fully resolved settings trees, "
        "one YAML document each); the same seed prints the same configs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="space YAML file")
    parser.add_argument("-n", type=whole(1, MAX_SAMPLES), default=5, metavar="N",
                        help="how many configs (default 5)")
    parser.add_argument("--seed", type=whole(0, MAX_SEED), default=None,
                        help="seed of the random sampler (default: the space's seed)")
    parser.add_argument("--params", action="store_true",
                        help="print only the sampled parameters (Optuna names)")


def run(args: argparse.Namespace) -> int:
    import optuna

    from spaces import load_space
    from spaces.yamlio import dump_yaml

    space = load_space(Path(args.file), filename=args.file)  # a path, newline or not
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created ..."
    try:
        samples = space.sample(args.n, args.seed)
    finally:
        optuna.logging.set_verbosity(verbosity)
    docs = [f"# trial {i}\n" + dump_yaml(params if args.params else config)
            for i, (params, config) in enumerate(samples)]
    print("---\n".join(docs), end="")
    return 0
