"""`search run SPACE.yaml`: the search itself (Ray Tune trials, Optuna sampling, a study)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.commands.values import MAX_CPUS, MAX_RETRIES, MAX_WARM_START, whole

USER_CODE = True  # imports the space's factories and fit from the current folder (cli.py)
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
    parser.add_argument("--retries", type=whole(0, MAX_RETRIES), default=1, metavar="N",
                        help="retries of a trial that crashed unexpectedly (default 1); "
                             "diverged, out-of-memory and misconfigured trials are not retried")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the "
                             "space's tracking.uri, else sqlite:///<output>/mlflow.db)")
    parser.add_argument("--warm-start", type=whole(0, MAX_WARM_START), default=3, metavar="K",
                        help="when the space changed since the study's last run, run its K best "
                             "earlier configs that are still valid first (default 3; 0: off)")
    parser.add_argument("--extend", action="store_true",
                        help="after raising the epochs: continue the best finished trials from "
                             "their checkpoints (only the epochs left run), the rest of "
                             "budget.trials as new trials (search/README.md, 'Extending')")
    parser.add_argument("--fit", default=None, metavar="MODULE:FUNCTION",
                        help="training function fn(config, *, report, ...) (default: the "
                             "space's fit:, else trainers:fit; docs/own-training.md); "
                             "search.testing:known_work_fit runs no training")


def add_common(parser: argparse.ArgumentParser) -> None:
    from search.commands import add_password_file

    add_password_file(parser)
    parser.add_argument("--output", metavar="DIR",
                        help="folder of the study and runs (default ./runs/<space name>)")
    parser.add_argument("--address", metavar="ADDR",
                        help="join this Ray cluster (default: $RAY_ADDRESS, else start Ray here)")
    parser.add_argument("--cpus", type=whole(1, MAX_CPUS), metavar="N",
                        help="CPUs of a local Ray (default: all of this machine)")
    parser.add_argument("--plain", action="store_true",
                        help="log lines instead of the live status line, even on a terminal")
    parser.add_argument("--no-stages", action="store_true",
                        help="do not run the space's stages after the search (`search stages "
                             "NAME` runs them later)")


def options_from(args: argparse.Namespace, **extra):
    from search.lifecycle.runner import RunOptions

    return RunOptions(output=args.output, address=args.address, cpus=args.cpus,
                      live=False if args.plain else None,
                      stages=not getattr(args, "no_stages", False), **extra)


def report(outcome, objectives) -> int:
    from search.lifecycle.summary import run_summary
    from search.studies import study as studies

    study = studies.load_study(studies.open_storage(outcome.storage_url), outcome.study_name)
    print(run_summary(study, outcome.run_id, objectives))
    if outcome.interrupted:
        print(f"interrupted; continue with: search resume {outcome.experiment_dir.parent}",
              file=sys.stderr)
    elif outcome.gave_up is not None:
        from search.tune.searcher import CRASHES_TO_STOP

        print(f"stopped: the first {CRASHES_TO_STOP} trials crashed with the same error, as "
              f"every trial would: {outcome.gave_up}. Fix the training code; `search run` "
              "again continues the study", file=sys.stderr)
    elif outcome.exit_code == 1:
        print("every trial failed; see the reasons above (and fail_reason in the study)",
              file=sys.stderr)
    return outcome.exit_code


def run(args: argparse.Namespace) -> int:
    from search.cluster.connect import local_token

    local_token(args.address)  # before Ray is imported
    from search.lifecycle.precheck import check_run
    from spaces import load_space

    space = load_space(Path(args.file), filename=args.file)  # a path, newline or not
    check_run(space, args)  # a refused run: one line in seconds, before Ray, Tune or MLflow
    from search.lifecycle.summary import opening

    # the first lines, within seconds: before Ray (search.lifecycle.runner imports it) and
    # MLflow start
    print(opening(space, output=args.output, storage=args.storage,
                  tracking_uri=args.tracking_uri, cpus=args.cpus, address=args.address),
          flush=True)
    import optuna

    from search.lifecycle.runner import run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options = options_from(args, storage=args.storage, new=args.new, retries=args.retries,
                           fit=args.fit, tracking_uri=args.tracking_uri,
                           warm_start=args.warm_start, extend=args.extend)
    outcome = run_search(space, options)
    return then_stages(args, outcome, report(outcome, outcome.objectives))


def then_stages(args: argparse.Namespace, outcome, code: int) -> int:
    """The space's enabled stages, when the search ended well and --no-stages is not given.
    The run file says whether they are left (search/lifecycle/runs.py `unfinished`), so a driver killed
    before or during them is continued by `search resume`."""
    from search.lifecycle.runs import read_run_file, write_run_file

    exp_dir = outcome.experiment_dir
    info = read_run_file(exp_dir)
    if info.get("stages") not in ("pending", "running"):
        return code

    def mark(state: str) -> None:
        write_run_file(exp_dir, {**read_run_file(exp_dir), "stages": state})

    if code != 0 or getattr(args, "no_stages", False):
        if not outcome.interrupted:  # an interrupted search still has its stages ahead
            mark("skipped")
        return code
    fit = (info.get("options") or {}).get("fit")
    if fit and not trains_model(fit):
        print(f"stages skipped: {fit} trains no model", file=sys.stderr)
        mark("skipped")
        return code
    from search.commands.stages import run_and_print

    from search.errors import UserError

    mark("running")
    print(flush=True)
    try:
        stage_code = run_and_print(exp_dir.parent, outcome.run_id, cpus=args.cpus,
                                   tracking_uri=getattr(args, "tracking_uri", None),
                                   storage=getattr(args, "storage", None))
    except UserError:
        mark("failed")  # a mistake a resume would only repeat
        raise
    mark("done" if stage_code == 0 else "failed")
    return stage_code


def trains_model(fit: str) -> bool:
    """False for a fit function that declares `trains_model = False` (no checkpoint a stage
    could start from, e.g. search.testing:known_work_fit)."""
    from search.tune.trainable import resolve_fit

    return bool(getattr(resolve_fit(fit), "trains_model", True))
