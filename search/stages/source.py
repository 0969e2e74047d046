"""Where the stages start: the search run (the newest, or one named) and its best trial's
checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.studies import study as studies
from search.errors import UserError
from search.studies.study import pareto_front


@dataclass(frozen=True)
class Source:
    """The checkpoint the pipeline starts from."""

    trial: int
    checkpoint: str
    values: tuple = ()


def enabled_stages(space: Any) -> list[dict]:
    """The stages that run, as the plain settings trainers.stages.run_stage takes."""
    return [s.as_dict() for s in space.stages if s.enabled]


def pick_run(output: Path, run_id: str | None = None) -> Path:
    """The run folder of `run_id`, by default the newest; a UserError when there is none, or
    when it is still running."""
    from search.lifecycle.runs import driver_alive, read_run_file, runs_of

    runs = runs_of(output)
    if not runs:
        raise UserError(f"stages: no search runs in {output}; run `search run SPACE.yaml` first")
    if run_id is None:
        folder = runs[-1]
    else:
        named = [r for r in runs if r.name == run_id]
        if not named:
            raise UserError(f"--run {run_id}: no such run in {output}; runs: "
                            + ", ".join(r.name for r in runs))
        folder = named[0]
    info = read_run_file(folder)
    if info.get("state") == "running" and driver_alive(info):
        raise UserError(f"stages: run {folder.name} is still running (pid {info.get('pid')}); "
                        "its stages run when it ends")
    return folder


def best_trial(trials: list, directions: list) -> Any | None:
    """The best COMPLETE trial: the first of the Pareto front ordered by the first objective
    (search.studies.study.front_key; with one objective simply the best)."""
    front = pareto_front(trials, directions)
    return front[0] if front else None


def find_source(study, output: Path, run_folder: Path) -> Source:
    """The best trial of the study as it stood when `run_folder`'s run ended (later runs'
    trials left out) and its best.pt; UserError when there is no such trial or file."""
    from search.lifecycle.runs import runs_of
    from search.lifecycle.summary import best_checkpoint

    names = [r.name for r in runs_of(output)]
    later = set(names[names.index(run_folder.name) + 1:]) if run_folder.name in names else set()
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.user_attrs.get(studies.RUN_ID) not in later]
    trial = best_trial(trials, study.directions)
    if trial is None:
        raise UserError(f"stages: study {study.study_name!r} has no completed trial (up to run "
                        f"{run_folder.name}); nothing for the stages to start from")
    checkpoint = best_checkpoint(trial)
    if checkpoint is None:
        where = trial.user_attrs.get(studies.TRIAL_DIR) or "(the trial recorded no folder)"
        raise UserError(f"stages: the best trial #{trial.number} has no checkpoint: no "
                        f"checkpoint_*/best.pt in {where}")
    return Source(trial.number, checkpoint, tuple(trial.values))
