"""`search run SPACE.yaml`: the search itself (Ray Tune trials, Optuna sampling, a study)."""
from __future__ import annotations

import argparse
import sys

NAME = "run"
HELP = ("run the search a space file declares: trials on Ray Tune, parameters from an Optuna "
        "sampler, results in a persistent study (running it again continues the study)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="space YAML file")
    add_common(parser)
    parser.add_argument("--storage", metavar="URL",
                        help="study database, e.g. postgresql://user@host/db (default: "
                             "$SEARCH_STORAGE, else sqlite:///<output>/study.db)")
    parser.add_argument("--new", action="store_true",
                        help="delete the study of this name first and start afresh")
    parser.add_argument("--retries", type=int, default=1, metavar="N",
                        help="retries of a trial that crashed unexpectedly (default 1); "
                             "diverged, out-of-memory and misconfigured trials are not retried")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the "
                             "space's tracking.uri, else sqlite:///<output>/mlflow.db)")
    parser.add_argument("--fit", default="trainers:fit", metavar="MODULE:FUNCTION",
                        help="training function with the signature of trainers.fit (default "
                             "trainers:fit; search.testing:known_work_fit runs no training)")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", metavar="DIR",
                        help="folder of the study and runs (default ./runs/<space name>)")
    parser.add_argument("--address", metavar="ADDR",
                        help="join this Ray cluster (default: $RAY_ADDRESS, else start Ray here)")
    parser.add_argument("--cpus", type=int, metavar="N",
                        help="CPUs of a local Ray (default: all of this machine)")
    parser.add_argument("--plain", action="store_true",
                        help="log lines instead of the live status line, even on a terminal")


def options_from(args: argparse.Namespace, **extra):
    from search.runner import RunOptions

    return RunOptions(output=args.output, address=args.address, cpus=args.cpus,
                      live=False if args.plain else None, **extra)


def report(outcome, objectives) -> int:
    from search.summary import run_summary
    from search import study as studies

    study = studies.load_study(studies.open_storage(outcome.storage_url), outcome.study_name)
    print(run_summary(study, outcome.run_id, objectives))
    if outcome.interrupted:
        print(f"interrupted; continue with: search resume {outcome.experiment_dir.parent}",
              file=sys.stderr)
    elif outcome.exit_code == 1:
        print("every trial failed; see the reasons above (and fail_reason in the study)",
              file=sys.stderr)
    return outcome.exit_code


def run(args: argparse.Namespace) -> int:
    import optuna

    from search.runner import run_search
    from spaces import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.file, filename=args.file)
    if args.retries < 0:
        from search.errors import UserError
        raise UserError(f"--retries: must be >= 0, got {args.retries}")
    options = options_from(args, storage=args.storage, new=args.new, retries=args.retries,
                           fit=args.fit, tracking_uri=args.tracking_uri)
    outcome = run_search(space, options)
    return report(outcome, outcome.objectives)
