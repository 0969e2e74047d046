"""The names a search gives things in MLflow, in one place: runs, metrics, tags, logged models.

Runs (one experiment per space; `search.kind` tags each run):
    <space> <run id>              the search (kind `search`), parent of
      trial-007 (pruned)          one run per trial (kind `trial`): `trial-NNN` while it runs,
                                  then its state appended: (complete), (pruned), (failed)
        seed-0, seed-1            with budget.seeds > 1, one run per seed (kind `seed`), with
                                  that seed's own curves and values
      stages                      the post-search stages (kind `stages`), parent of
        0-best, 1-finetune, ...   one run per stage attempt (kind `stage`)

Metrics, one scheme for trials and stages (MLflow's charts group keys by the part before the
last "/", custom groups first, alphabetically, then the plain "Model metrics"):
    epoch/<name>     per-epoch learning curves, step = epoch: epoch/val_accuracy, epoch/val_loss,
                     epoch/train_loss, epoch/train_accuracy (and any value of the user's own)
    training/<name>  per-epoch training diagnostics: training/lr, training/grad_norm,
                     training/epoch_time, training/samples_per_sec, training/temperature
    <metric>_std     with budget.seeds > 1: the trial's values are the seeds' means, with the
                     objective's std over the seeds beside it (a curve and a one-value metric)
    <name>           one value per run, step 0: the objective under its own name (a trial's
                     `val_accuracy` is the value the study got: the selected epoch's; a pruned
                     trial's its last reported value), test_accuracy, num_params,
                     selected_epoch, epochs_run; a stage's measured figures (val_accuracy,
                     test_accuracy, num_params, size_bytes, latency_ms_b1, ...)
Constants (the epoch number, the batch size) are not metrics: the step is the epoch, the batch
size is a parameter.
"""
from __future__ import annotations

import re

# The experiment: MLflow 3's UI opens a "custom_model_development" experiment on its runs (a
# GenAI one on traces); the primary metric is the objective.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
PRIMARY_METRIC = "mlflow.experiment.primaryMetric.name"
GREATER_IS_BETTER = "mlflow.experiment.primaryMetric.greaterIsBetter"
NOTE = "mlflow.note.content"

TAG_KIND = "search.kind"
SEARCH, TRIAL, STAGES, STAGE, SEED = "search", "trial", "stages", "stage", "seed"
TAG_SEED = "search.seed"
_SEED_KEY = re.compile(r"seed-(\d+)/(.+)")  # one seed's value in a trial's result (seeds.py)
STAGES_RUN = "stages"  # the name (and key) of the run grouping a search's stages

CURVES, TRAINING = "epoch/", "training/"
DIAGNOSTICS = frozenset({"lr", "grad_norm", "epoch_time", "samples_per_sec", "temperature"})
NOT_METRICS = frozenset({"epoch", "batch_size", "training_iteration"})
# Values a trial reports once, with its last result (search/tune/trainable.py's final fields).
WHOLE_RUN = frozenset({"test_accuracy", "num_params", "selected_epoch", "epochs_run", "folds",
                       "latency_ms", "gpu_peak_mb", "best_val_accuracy", "horizon"})
# Known before training and in every epoch's report (trainers/loop.py: a pruner ranking several
# objectives reads it there): one value from the first report on, never a flat curve.
CONSTANT = frozenset({"num_params"})
FINAL_PREFIX = "final_"  # the objective at the selected epoch: logged under its own name
_FOLD = re.compile(r"fold\d+_")
# A stage's figures under the trial's names, so that both share a column.
FIGURE_NAMES = {"params": "num_params"}
# The logged model of a registered stage model, by the stage that made it.
STAGE_MODELS = {"finetune": "finetuned", "distill": "distilled", "quantize": "quantized"}
STATE_WORDS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAILED": "failed",
               "KILLED": "killed"}


def is_whole_run(key: str) -> bool:
    """A value a run has once (logged at step 0), not one per epoch."""
    return key in WHOLE_RUN or key.startswith(FINAL_PREFIX) or bool(_FOLD.match(key))


def curve_key(key: str) -> str:
    """The MLflow key of a per-epoch value."""
    return (TRAINING if key in DIAGNOSTICS else CURVES) + key


def whole_run_key(key: str) -> str:
    """The MLflow key of a value a run has once (`final_val_accuracy` -> `val_accuracy`)."""
    key = key[len(FINAL_PREFIX):] if key.startswith(FINAL_PREFIX) else key
    return FIGURE_NAMES.get(key, key)


def split_result(metrics: dict[str, float], last: bool = True) \
        -> tuple[dict[str, float], dict[str, float]]:
    """(per-epoch curves, whole-run values) of one report, under their MLflow keys; the
    constants left out. Only a trial's `last` report has whole-run values, but for CONSTANT
    ones (a pruned trial has no last report). `final_<m>` wins over a plain whole-run `<m>`
    (they are equal)."""
    curves, whole = {}, {}
    for key, value in metrics.items():
        if key in NOT_METRICS:
            continue
        if (last and is_whole_run(key)) or key in CONSTANT:
            name = whole_run_key(key)
            if key.startswith(FINAL_PREFIX) or name not in whole:
                whole[name] = value
        else:
            curves[curve_key(key)] = value
    return curves, whole


def split_seeds(metrics: dict[str, float]) -> tuple[dict[str, float],
                                                   dict[int, dict[str, float]]]:
    """(the trial's own values, each seed's values under their plain names) of one result."""
    own: dict[str, float] = {}
    seeds: dict[int, dict[str, float]] = {}
    for key, value in metrics.items():
        m = _SEED_KEY.fullmatch(key)
        if m:
            seeds.setdefault(int(m.group(1)), {})[m.group(2)] = value
        else:
            own[key] = value
    return own, seeds


def seed_run_name(seed: int) -> str:
    return f"seed-{seed}"


def trial_number_text(number: int | None, tune_id: str) -> str:
    return f"{number:03d}" if number is not None else tune_id


def trial_run_name(number: int | None, tune_id: str, state: str | None = None) -> str:
    """`trial-007` (zero-padded, so that names sort by number), `trial-007 (pruned)` once
    ended."""
    name = f"trial-{trial_number_text(number, tune_id)}"
    word = STATE_WORDS.get(state or "")
    return f"{name} ({word})" if word else name


def stage_model_name(stage: str) -> str:
    return STAGE_MODELS.get(stage, stage)


def experiment_tags(metric: str, mode: str, space: str) -> dict[str, str]:
    """Tags of a new experiment (and, when missing, of one made before they existed)."""
    return {EXPERIMENT_KIND: MODEL_TRAINING, PRIMARY_METRIC: metric,
            GREATER_IS_BETTER: "true" if mode == "max" else "false",
            NOTE: (f"Hyperparameter searches of the space `{space}` (torch-search). Each "
                   f"search is a parent run; its children are the trials (`trial-NNN`, the "
                   f"state in the name and in the tag `search.state`) and a `stages` run with "
                   f"the post-search stages. The objective `{metric}` is a one-value metric "
                   f"of each trial; per-epoch curves are `epoch/*` (learning) and "
                   f"`training/*` (lr, gradient norm, speed); see search/README.md, MLflow.")}
