"""`search submit SPACE.yaml --address http://HEAD:8265`: the search as a Ray Job."""
from __future__ import annotations

import argparse

from search.commands.values import MAX_RETRIES, MAX_WARM_START, whole

USER_CODE = True  # imports the space's factories and fit from the current folder (cli.py)
NAME = "submit"
HELP = ("send the search of a space file to a Ray cluster as a Ray Job (`python -m search.cli "
        "run` on the cluster's head, runs written to --output); prints the job id that "
        "`search status JOB --address ...` follows")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="space YAML file (uploaded with the job)")
    parser.add_argument("--address", metavar="URL",
                        help="the cluster's Ray dashboard, e.g. http://HEAD:8265 (default: "
                             "$RAY_API_SERVER_ADDRESS)")
    parser.add_argument("--job-id", metavar="ID",
                        help="name the job (default: Ray's raysubmit_...); must be new")
    parser.add_argument("--follow", action="store_true",
                        help="stay and print the job's log until it ends; exit with its outcome")
    group = parser.add_argument_group(
        "passed to `search run` on the cluster (default: the head's environment, e.g. "
        "$SEARCH_STORAGE, $MLFLOW_TRACKING_URI)")
    group.add_argument("--output", metavar="DIR",
                       help="required: folder of the runs (study, Tune, MLflow files), absolute, "
                            "shared by every node; the job's own folder is deleted by Ray")
    group.add_argument("--storage", metavar="URL",
                       help="study database, without a password (Ray keeps the job's command "
                            "line): the head's $SEARCH_STORAGE or $PGPASSWORD supplies it")
    group.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI")
    group.add_argument("--new", action="store_true", help="delete the study first")
    group.add_argument("--retries", type=whole(0, MAX_RETRIES), metavar="N",
                       help="retries of a crashed trial")
    group.add_argument("--warm-start", type=whole(0, MAX_WARM_START), metavar="K",
                       help="earlier best configs to run first when the space changed")
    group.add_argument("--fit", metavar="MODULE:FUNCTION", help="training function")


def run(args: argparse.Namespace) -> int:
    from search.errors import UserError
    from search.cluster.submit import describe, follow, submit
    from search.urls import has_secret

    for flag, value in (("--storage", args.storage), ("--tracking-uri", args.tracking_uri)):
        if value and has_secret(value):
            raise UserError(f"{flag}: holds a password, which Ray would keep in the job's "
                            "entrypoint; leave it out and set it on the cluster ($PGPASSWORD or "
                            "$SEARCH_STORAGE from a Kubernetes Secret, see deploy/README.md)")
    flags = {"--output": args.output, "--storage": args.storage,
             "--tracking-uri": args.tracking_uri, "--new": args.new,
             "--retries": args.retries, "--warm-start": args.warm_start, "--fit": args.fit}
    job, url = submit(args.file, args.address, flags, job_id=args.job_id)
    print(job)
    if not args.follow:
        print(f"follow it: search status {job} --address {url} [--follow]  (or the dashboard "
              f"{url})")
        return 0
    info = follow(args.address, job)
    print(describe(info))
    return 0 if info.status.value == "SUCCEEDED" else 1
