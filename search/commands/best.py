"""`search best NAME`: the best configuration found, as a space file `search run` takes back."""
from __future__ import annotations

import argparse
import sys

from search.commands import add_search_arguments, open_search
from search.commands.values import whole

NAME = "best"
HELP = ("print the best trial's configuration as a space file whose fixed sections are that "
        "configuration (`search best NAME > best.yaml && search run best.yaml`)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser)
    parser.add_argument("--trial", type=whole(0), metavar="N",
                        help="this trial number instead of the best (e.g. another point of a "
                             "Pareto front)")


def run(args: argparse.Namespace) -> int:
    from search.studies import study as studies
    from search.errors import UserError
    from search.lifecycle.runs import space_of_trial
    from search.lifecycle.summary import best_space

    _, output, study = open_search(args)
    name = study.study_name  # after a warm start the successor study (NAME@2), not NAME
    if args.trial is not None:
        trials = study.get_trials(deepcopy=False)
        if not 0 <= args.trial < len(trials) or trials[args.trial].state.name != "COMPLETE":
            done = [t.number for t in studies.ranked(study)]
            raise UserError(f"--trial {args.trial}: not a completed trial of study {name!r}; "
                            f"completed: {', '.join(map(str, done[:20])) or 'none'}")
        trial = trials[args.trial]
    else:
        best = studies.best_trials(study)
        if not best:
            raise UserError(f"best: study {name!r} has no completed trial yet")
        trial = best[0]
        if len(best) > 1:
            print(f"# Pareto front: trials {', '.join(str(t.number) for t in best)}; printing "
                  f"#{trial.number} (choose another with --trial N)", file=sys.stderr)
    space = space_of_trial(output, trial)
    print(best_space(space, space.config_from_params(trial.params), trial, name), end="")
    return 0
