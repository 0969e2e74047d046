"""`distill` with `trials: N > 0`: a small Optuna search over the student's alpha, temperature
and lr (as a factor on the stage's lr_scale), N trials scored on validation accuracy; the best
student is the stage's model.

The study lives in the search's storage as `<space>-distill-<run id>` (TPE, seeded by the space's
seed; the stage's own options are its first trial). Each trial's student is kept beside the stage
(`<index>-distill.trials/trial-<n>.pt`), so running the pipeline again continues the study. The
study remembers the teacher and options it was made for: another teacher starts it afresh.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

ALPHA = (0.0, 1.0)
TEMPERATURE = (1.0, 10.0)     # log scale; widened to hold the stage's own temperature
OWNER = "owner"  # study user attr: the stage's options the distill study was made for
LR_FACTOR = 5.0               # lr_scale searched in [lr_scale / 5, lr_scale * 5], log scale


def study_name(space_name: str, run_id: str) -> str:
    return f"{space_name}-distill-{run_id}"


def forget(storage_url: str, name: str) -> None:
    """Delete the study (`--restart`)."""
    import optuna

    from search.studies import study as studies

    storage = studies.open_storage(storage_url)
    if name in studies.study_names(storage):
        optuna.delete_study(study_name=name, storage=storage)


def _open(storage_url: str, name: str, seed: int | None, owner: dict, folder: Path):
    import optuna

    from search.studies import study as studies

    storage = studies.open_storage(storage_url)
    if name in studies.study_names(storage):
        old = optuna.load_study(study_name=name, storage=storage)
        if old.user_attrs.get(OWNER) != owner:
            optuna.delete_study(study_name=name, storage=storage)
            shutil.rmtree(folder, ignore_errors=True)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                sampler=sampler, load_if_exists=True)
    study.set_user_attr(OWNER, owner)
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "RUNNING":  # left by a killed pipeline
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return study


def train_student(stage: dict, teacher, *, data=None, cpus: int | None = None):
    """One student: the distill stage (with a trial's options) on `teacher`, and the student's
    validation accuracy (fp32, on the CPU where every StageModel lives). `data` None: loaded
    here, on the device the config trains on (a stage task on a GPU node)."""
    import torch

    from trainers.loop import evaluate
    from trainers.stages import run_stage

    if data is None:
        from trainers.stages.distillation import distill_config
        from trainers.stages.finetuning import load_stage_data

        data = load_stage_data(distill_config(teacher.config, stage, teacher.base_lr))
    student = run_stage(stage, teacher, data=data, cpus=cpus)
    _, accuracy = evaluate(student.model, data.val, torch.device("cpu"))
    return student, accuracy


def search_distill(stage: dict, teacher, *, storage_url: str, name: str, seed: int | None,
                   teacher_id: str, folder: Path,
                   train: Callable[[dict], tuple[Any, float]],
                   say: Callable[[str], None],
                   on_trial: Callable[[int, dict, float], None] | None = None
                   ) -> tuple[Any, dict]:
    """(best student, {"study", "trials", "best_trial", "best": options, "val_accuracy"}).
    `train(stage with a trial's options) -> (student, val accuracy)` trains one student
    (`train_student`, in this process or as a Ray task: placement.py)."""
    import optuna

    from trainers.stages import load_stage_model, save_stage_model

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    wanted = int(stage["trials"])
    base = {"alpha": float(stage["alpha"]), "temperature": float(stage["temperature"]),
            "lr_scale": float(stage["lr_scale"])}
    owner = {"teacher": teacher_id, "stage": json.loads(json.dumps(stage, default=str))}
    study = _open(storage_url, name, seed, owner, folder)
    usable = lambda: [t for t in study.get_trials(deepcopy=False)  # noqa: E731
                      if t.state.name == "COMPLETE" and (folder / f"trial-{t.number}.pt").is_file()]
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]
    if not usable() and not waiting:
        study.enqueue_trial(base)  # the options as written come first
    lr_low, lr_high = base["lr_scale"] / LR_FACTOR, base["lr_scale"] * LR_FACTOR
    t_low, t_high = min(TEMPERATURE[0], base["temperature"]), max(TEMPERATURE[1],
                                                                   base["temperature"])
    while len(usable()) < wanted:
        trial = study.ask()
        options = {"alpha": trial.suggest_float("alpha", *ALPHA),
                   "temperature": trial.suggest_float("temperature", t_low, t_high, log=True),
                   "lr_scale": trial.suggest_float("lr_scale", lr_low, lr_high, log=True)}
        try:
            student, accuracy = train({**stage, **options, "trials": 0})
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        save_stage_model(student, folder / f"trial-{trial.number}.pt")
        study.tell(trial, accuracy)
        say(f"distill trial {trial.number}: " + ", ".join(f"{k} {v:.4g}" for k, v in
                                                          options.items())
            + f": val accuracy {accuracy:.4f}")
        if on_trial is not None:
            on_trial(trial.number, options, accuracy)
    best = max(usable(), key=lambda t: (t.value, -t.number))
    student = load_stage_model(folder / f"trial-{best.number}.pt")
    return student, {"study": name, "trials": len(usable()), "best_trial": best.number,
                     "best": dict(best.params), "val_accuracy": best.value}
