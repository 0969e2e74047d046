"""`search ui NAME`: the MLflow UI (`mlflow server`) on a search's tracking backend, with links
straight to what a user came for: the runs of the search's experiment (the model-training view,
not MLflow 3's GenAI overview), the search's parent run, its best trial's run and its registered
model.

The backend and artifacts are those of the search folder as it is now: a copied or moved folder
shows its own runs (search/tracking/settings.py `Settings.at`, search/tracking/relocate.py).
The server runs in a process group of its own and ends with the command (search/commands/services.py).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from search.commands import add_search_arguments
from search.commands.services import add_listen_arguments

NAME = "ui"
HELP = "start the MLflow UI on a search's tracking backend and print links to its runs"
START_TIMEOUT = 120.0
PORT = 5000
# MLflow 3's UI opens on its GenAI views (traces, tokens) unless a link asks for the model-
# training ones (the query is kept by the UI as the user's choice); an experiment's kind tag
# says what it holds.
ML_VIEW = "?workflowType=machine_learning"
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser, optional=True, storage=False)
    parser.add_argument("--tracking-uri", metavar="URI", help="backend to show (default: "
                        "$MLFLOW_TRACKING_URI, else the one the search used)")
    add_listen_arguments(parser, PORT)


@dataclass
class Target:
    """What to show: the backend, the artifact root for experiments made in the UI itself, and
    (when a search folder is named) its latest tracked run's settings and its output folder."""

    uri: str
    artifacts: str
    settings: object = None
    output: Path | None = None
    notes: list[str] = field(default_factory=list)


def server_command(artifacts: str, host: str, port: int) -> list[str]:
    """`mlflow server`; its backend comes by the environment (`server_env`), so that a
    password in it is not on a command line that `ps` shows."""
    return [sys.executable, "-m", "mlflow", "server", "--default-artifact-root", artifacts,
            "--host", host, "--port", str(port), "--workers", "1",
            "--uvicorn-opts", "--no-access-log"]  # no line per request the browser makes


def server_env(uri: str) -> dict[str, str]:
    from search.urls import reveal

    return {**os.environ, "MLFLOW_BACKEND_STORE_URI": reveal(uri),
            "MLFLOW_REGISTRY_STORE_URI": reveal(uri),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION":
                os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}


def run(args: argparse.Namespace) -> int:
    from search.cluster import reaper
    from search.errors import UserError
    from search.commands.services import (Stopped, base_url, check_port, start_server, stop_group,
                                 stop_on_signals, wait_up)
    from search.tracking.backend import is_http, probe, redact

    target = find_target(args)
    for note in target.notes:
        print(note, flush=True)
    if is_http(target.uri):  # already a server: its UI is right there
        found = links(target, target.uri.rstrip("/"))
        print(f"MLflow UI: {found[0].url}")
        print_links(found[1:])
        return 0
    probe(target.uri)  # a database that is down is said now, not after the server gives up
    check_port(args.host, args.port)
    url = base_url(args.host, args.port)
    watchdog = reaper.watch()  # killed with SIGKILL, this command still takes its server along
    proc = start_server(server_command(target.artifacts, args.host, args.port),
                        server_env(target.uri))
    try:
        with stop_on_signals():
            found = links(target, url)  # while the server starts
            if not wait_up(proc, url + "/health", START_TIMEOUT):
                raise UserError(f"mlflow server on {redact(target.uri)} did not start (exit "
                                f"code {proc.poll()}); its messages are above")
            print(f"MLflow UI: {found[0].url}")
            print(f"  (the server: {url}, backend {redact(target.uri)}; Ctrl-C stops it)")
            print_links(found[1:])
            if target.output is not None:
                print(f"the study in optuna-dashboard: search dashboard --output "
                      f"{target.output}")
            sys.stdout.flush()
            return proc.wait()
    except (KeyboardInterrupt, Stopped):
        return 0
    finally:
        stop_group(proc)
        reaper.stop(watchdog)


def find_target(args: argparse.Namespace) -> Target:
    """The backend to show, by precedence: --tracking-uri, $MLFLOW_TRACKING_URI, the search's
    own (its folder's latest tracked run, rebased to where the folder is now)."""
    from search.errors import UserError
    from search.tracking.backend import (ARTIFACT_DIR, ENV_URI, default_uri, is_http,
                                         normalise)
    from search.tracking.factory import output_folder
    from search.tracking.settings import saved_runs

    if args.tracking_uri:
        normalise(args.tracking_uri, "--tracking-uri")
    uri = args.tracking_uri or os.environ.get(ENV_URI)
    where = "--tracking-uri" if args.tracking_uri else f"${ENV_URI}"
    target = Target(uri or "", os.path.abspath(ARTIFACT_DIR))
    if args.name or args.output or not uri:
        from search.lifecycle.runs import output_of

        output = output_of(args.name, args.output)[1]
        runs = saved_runs(output)
        target.output = output
        target.artifacts = str(output / ARTIFACT_DIR)
        if runs:
            target.settings = runs[-1]
            target.artifacts = runs[-1].artifact_location or target.artifacts
        if not uri and runs:
            uri, where = runs[-1].uri, "the search's tracking uri"
        elif not uri and (output / "mlflow.db").is_file():
            uri, where = default_uri(output), "the search's tracking uri"
        elif not uri:
            raise UserError(f"{output}: no tracked search here; run `search run SPACE.yaml` "
                            "first, or give --output DIR or --tracking-uri URI")
    target.uri = normalise(uri, where)
    if target.settings is not None and not is_http(target.uri):
        target.notes += own_artifacts(target)
    return target


def own_artifacts(target: Target) -> list[str]:
    """A folder copied or moved since its search: its own database still records the old
    folder's artifact URIs; rebase them onto the folder's own (a line saying so)."""
    from search.tracking.relocate import recorded_root, relocate

    settings = target.settings
    own_db = f"sqlite:///{target.output}/"
    if not (settings.artifact_location and target.uri.startswith(own_db)):
        return []
    old = recorded_root(target.uri, settings.experiment)
    if old is None or old.rstrip("/") == settings.artifact_location.rstrip("/"):
        return []
    changed = relocate(target.uri, old, settings.artifact_location)
    return [f"this search folder was moved or copied from {old}: its database now points at "
            f"its own artifacts ({changed} locations rebased)"]


@dataclass
class Link:
    what: str
    url: str


def links(target: Target, base: str) -> list[Link]:
    """Links into the UI for the target's search: the experiment's runs (model-training view),
    the search's parent run, its best trial's run, its registered model; what cannot be found
    (a backend that does not answer, a search with no finished trial) is left out."""
    import logging

    found = [Link("experiments", f"{base}/#/experiments{ML_VIEW}")]
    settings = target.settings
    if settings is None:
        return found
    try:
        from search.tracking.backend import open_client

        client = open_client(target.uri)
        exp = client.get_experiment_by_name(settings.experiment)
        if exp is None:
            return found
        if not exp.tags.get(KIND_TAG):
            client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
        runs = f"{base}/#/experiments/{exp.experiment_id}/runs"
        found = [Link(f"runs of experiment {settings.experiment}", runs + ML_VIEW)]
        parent = parent_run(client, exp.experiment_id, settings)
        if parent:
            found.append(Link(f"search run {settings.run_id}", f"{runs}/{parent}{ML_VIEW}"))
        best = best_trial_run(target.output)
        if best:
            found.append(Link(f"best trial #{best[0]}", f"{runs}/{best[1]}{ML_VIEW}"))
        if settings.register_as:
            found += model_links(client, base, settings.register_as)
    except Exception as err:  # links are a convenience: the UI itself still starts
        logging.getLogger("search").debug("ui links: %s", err)
        print(f"(links to runs left out: {type(err).__name__}: {str(err)[:200]})",
              file=sys.stderr)
    return found


def parent_run(client, experiment_id: str, settings) -> str | None:
    from search.tracking.runs import PARENT, TAG_KEY, TAG_SEARCH

    runs = client.search_runs([experiment_id], filter_string=(
        f"tags.`{TAG_SEARCH}` = '{settings.search_id}' and tags.`{TAG_KEY}` = '{PARENT}'"),
        max_results=1)
    return runs[0].info.run_id if runs else None


def best_trial_run(output: Path | None) -> tuple[int, str] | None:
    """(number, MLflow run id) of the study's best trial (the first of a Pareto front)."""
    if output is None:
        return None
    from search.studies import study as studies
    from search.lifecycle.runs import locate

    try:
        name, _, url = locate(str(output))
    except Exception:  # no study beside these runs (tracking only)
        return None
    storage = studies.open_storage(url)
    study = studies.load_study(storage, studies.current_name(storage, name))
    best = studies.best_trials(study)
    run_id = best[0].user_attrs.get(studies.MLFLOW_RUN_ID) if best else None
    return (best[0].number, run_id) if run_id else None


def model_links(client, base: str, name: str) -> list[Link]:
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:  # nothing registered yet
        return []
    from urllib.parse import quote

    home = f"{base}/#/models/{quote(name, safe='')}"
    found = [Link(f"registered model {name}", home + ML_VIEW)]
    for alias, version in sorted((model.aliases or {}).items()):
        found.append(Link(f"  alias {alias}: version {version}",
                          f"{home}/versions/{version}{ML_VIEW}"))
    return found


def print_links(found: list[Link]) -> None:
    width = max((len(link.what) for link in found), default=0)
    for link in found:
        print(f"  {link.what.ljust(width)}  {link.url}")
