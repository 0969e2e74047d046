"""The integration point: `make_tracking(space, ...)` turns a space's tracking section into the
Tune callback, after proving the backend usable (a UserError otherwise, before any trial runs),
and `sync(output_dir)` replays what a search spooled while its backend was away.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from .backend import artifact_location, normalise, open_client, redact, resolve_uri
from .callback import TrackingCallback
from .registry import DEFAULT_LOADER
from .runs import flatten
from .settings import Settings, latest, saved_runs
from .tracker import SearchTracker

log = logging.getLogger("search.tracking")
SEARCH_SECTIONS = ("objective", "budget", "sampler", "pruner", "resources")
PACKAGES = ("torch", "torchvision", "optuna", "ray", "mlflow")


def make_tracking(space: Any, *, output_dir: str | Path, run_id: str | None = None,
                  space_path: str | Path | None = None, tracking_uri: str | None = None,
                  study: Any = None, resume: bool = False,
                  trial_number: Callable[[str], int | None] | None = None,
                  set_run_id: Callable[[str, str], None] | None = None,
                  loader: str = DEFAULT_LOADER, register: bool = True,
                  tags: dict[str, str] | None = None) -> TrackingCallback | None:
    """The Tune callback recording this search run in MLflow, or None when the space says
    tracking.enabled: false. Probes the backend (UserError when unusable), creates the
    experiment and the parent run (or, with `resume`, reattaches to the run of `run_id`).
    `tags` are added to the parent's (search.previous_run: the MLflow id of the study's run
    before this one, which a scheduled re-run continues). `register=False`: no model is
    registered (a training function of the user's own writes checkpoints `loader` cannot
    rebuild)."""
    tracking = space.tracking
    if not tracking.enabled:
        return None
    output = Path(output_dir).expanduser().absolute()
    uri = resolve_uri(tracking_uri, tracking.uri, output)
    client = open_client(uri)
    run_id = run_id or time.strftime("run-%Y%m%d-%H%M%S")
    objective = space.objectives[0]
    settings = Settings(
        uri=uri, experiment=tracking.experiment,
        artifact_location=artifact_location(uri, output),
        search_id=f"{run_id}@{hashlib.sha1(str(output).encode()).hexdigest()[:8]}",
        name=space.name, output_dir=str(output), run_id=run_id, metric=objective.metric,
        mode=objective.mode, keep_checkpoints=tracking.keep_checkpoints,
        budget=space.budget.max_epochs,
        register_as=tracking.register_as if register else "",
        loader=loader)
    settings.save()
    writer = settings.writer(client)
    if writer.down:  # a spool left by an earlier session of this run goes first
        writer.replay()
    config_from_params = getattr(space, "config_from_params", None)
    tracker = SearchTracker(writer, name=f"{space.name} {run_id}", metric=settings.metric,
                            mode=settings.mode, keep_checkpoints=settings.keep_checkpoints,
                            budget=settings.budget, study=study, trial_number=trial_number,
                            set_run_id=set_run_id, config_from_params=config_from_params)
    texts, files = {"space.yaml": space.to_yaml()}, {}
    path = Path(space_path) if space_path else getattr(space, "source", None)
    if path is not None and Path(path).is_file():
        files["space_file"] = str(Path(path).absolute())
    tracker.start(params=parent_params(space),
                  tags={**parent_tags(space, path, output, texts), **(tags or {})},
                  texts=texts, files=files, resume=resume)
    log.info("tracking %s in %s (experiment %r)", run_id, redact(uri), settings.experiment)
    return TrackingCallback(settings, tracker, study=study,
                            config_from_params=config_from_params,
                            trial_number=trial_number, set_run_id=set_run_id)


def parent_params(space: Any) -> dict[str, Any]:
    """The fixed settings (searched ones left out: their values differ per trial) and the
    search's own sections, as dotted names."""
    searched = {getattr(p, "path", None) for p in getattr(space, "params", [])} | \
        {getattr(p, "name", None) for p in getattr(space, "params", [])}
    params = {k: v for k, v in flatten(space.fixed).items()
              if k not in searched}
    written = space.sections()
    for section in SEARCH_SECTIONS:
        value = written[section]
        if isinstance(value, dict):
            params.update(flatten(value, f"search.{section}."))
        elif value is not None:
            params[f"search.{section}"] = value
    params["search.seed"] = space.seed
    params["search.searched"] = ", ".join(getattr(p, "name", str(p))
                                          for p in getattr(space, "params", []))
    return params


def parent_tags(space: Any, path: Path | None, output: Path, texts: dict) -> dict[str, str]:
    tags = {"search.name": space.name, "search.output_dir": str(output),
            "search.sampler": space.sampler.name,
            "search.pruner": space.pruner.name,
            "versions.python": platform.python_version()}
    if path is not None and Path(path).is_file():
        tags["search.space_file"] = str(Path(path).absolute())
        tags["search.space_sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    elif "space.yaml" in texts:
        tags["search.space_yaml_sha256"] = hashlib.sha256(
            texts["space.yaml"].encode()).hexdigest()
    description = space.description
    if description:
        tags["mlflow.note.content"] = description
    for package in PACKAGES:
        try:
            tags[f"versions.{package}"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    tags.update(git_tags(Path.cwd()))
    return tags


def git_tags(cwd: Path) -> dict[str, str]:
    """The commit (and whether the tree has uncommitted changes) when cwd is a git checkout."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    tags = {"mlflow.source.git.commit": commit}
    if status is not None:
        tags["git.dirty"] = "true" if status else "false"
    return tags


def sync(output_dir: str | Path, *, tracking_uri: str | None = None,
         run_id: str | None = None) -> list[tuple[Settings, int, int]]:
    """Replay the spools of the output folder's search runs (or of `run_id`) to their backend
    (or to `tracking_uri`). Returns (settings, writes applied, writes left) per run with a
    spool; UserError when the folder holds no tracked search or the backend is unreachable."""
    output = Path(output_dir).expanduser().absolute()
    runs = saved_runs(output) if run_id is None else \
        [s for s in saved_runs(output) if s.run_id == run_id]
    if not runs:
        latest(output)  # raises the "no tracked search here" error
        raise_unknown_run(output, run_id)
    done = []
    for settings in runs:
        if not settings.spool_path.exists():
            continue
        if tracking_uri:
            from dataclasses import replace

            settings = replace(settings, uri=normalise(tracking_uri, "--tracking-uri"))
        writer = settings.writer(open_client(settings.uri))
        applied, left = writer.replay()
        if not left:
            relink(output, settings, writer)
        done.append((settings, applied, left))
    return done


def relink(output: Path, settings: Settings, writer) -> int:
    """Point each study trial of the run at its MLflow run (user attr `mlflow_run_id`): trials
    recorded while the backend was away got no link then. How many links were written."""
    from search.studies import study as studies
    from search.lifecycle.runs import read_run_file

    from .tracker import RUN_ID_ATTR, TAG_NUMBER

    try:
        info = read_run_file(output / settings.run_id)
        storage = studies.open_storage(info["storage_url"])
        trials = storage.get_all_trials(storage.get_study_id_from_name(info["study_name"]),
                                        deepcopy=False)
        runs = writer.book.children()
    except Exception as err:  # no study to link (another tool's search, a moved database)
        log.warning("tracking: cannot link the study's trials to their runs (%s)", err)
        return 0
    linked = 0
    for run in runs:
        number = run.data.tags.get(TAG_NUMBER, "")
        if not run.data.tags.get("search.key", "").startswith("trial/") or \
                not number.isdigit() or int(number) >= len(trials):
            continue
        trial = trials[int(number)]
        if trial.user_attrs.get(RUN_ID_ATTR) != run.info.run_id:
            studies.set_attr_of_ended(storage, trial._trial_id, RUN_ID_ATTR, run.info.run_id)
            linked += 1
    return linked


def raise_unknown_run(output: Path, run_id: str | None) -> None:
    from search.errors import UserError

    have = ", ".join(s.run_id for s in saved_runs(output))
    raise UserError(f"{output}: no tracked search run {run_id!r}; runs here: {have}")


def output_folder(target: str | None, output: str | None) -> Path:
    """The output folder a user names (search.lifecycle.runs.output_of)."""
    from search.lifecycle.runs import output_of

    return output_of(target, output)[1]
