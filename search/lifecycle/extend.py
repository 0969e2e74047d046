"""`search run SPACE --extend`: continue a finished search to a longer horizon.

After raising the epochs (`budget.max_epochs`, and `train.epochs` where it is lower), the run
continues the most promising finished trials of the study from their last checkpoints instead
of training them again: each becomes a new trial of the same study (the sampler keeps its
history) with the same parameters, the user attr `extends` = the number of the trial it
continues and `resume_from` = that trial's checkpoint folder; the trainer restores it and
trains only the epochs left (trainers.fit `resume_from`). Which ones: the trials that ran a
shorter horizon than the new one, best first by the first objective, as many as the pruner's
rule keeps at a rung — the top 1/reduction_factor for asha, the top half for median, all for
none — counting every trial of that horizon (pruned ones too), at least one, at most
budget.trials, and only those whose checkpoint is still on disk (tracking.keep_checkpoints
decides which finished trials keep one). The rest of budget.trials runs as new trials at the
new horizon. The scheduler never stops a continuation: it was already selected by the
pruner's rule (`Sparing`); new trials are pruned as usual.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.errors import UserError
from search.lifecycle.plan import Budget, epochs_cap
from search.studies import study as studies
from search.studies.study import EXTENDS, RESUME_FROM

EXTENDS_KEY = "extends"  # in a continuation's Tune config: the trial number it continues


@dataclass
class Extension:
    horizon: int                                    # the epochs trials now run
    shorter: int = 0                                # trials that ran fewer
    share: float = 1.0                              # what the pruner's rule keeps
    chosen: list[tuple[int, str]] = field(default_factory=list)  # (number, checkpoint)
    missing: int = 0                                # selected ones without a checkpoint

    def line(self) -> str:
        chosen = ", ".join(f"#{n}" for n, _ in self.chosen)
        return (f"extend: {len(self.chosen)} of {self.shorter} trials that ran fewer than "
                f"{self.horizon} epochs continue from their checkpoints ({chosen})"
                + (f"; {self.missing} selected had no checkpoint left" if self.missing else ""))

    def record(self) -> dict:
        return {"horizon": self.horizon, "shorter": self.shorter, "share": self.share,
                "continued": [n for n, _ in self.chosen], "missing": self.missing}


def keep_share(space: Any) -> float:
    """The share of the trials at a rung that the space's pruner lets go on."""
    pruner = space.pruner
    name = pruner.name
    if name == "asha":
        return 1.0 / float(pruner.reduction_factor)
    if name == "median":
        return 0.5
    if name == "none":
        return 1.0
    raise UserError(f"--extend: pruner {name} cannot extend a search (a hyperband bracket or a "
                    "pbt population cannot take in continued trials); use asha, median or none")


def horizon_of(space: Any, budget: Budget, params: dict) -> int:
    """The epochs a trial with these parameters runs under this space and budget."""
    config = epochs_cap(space.config_from_params(dict(params)), budget)
    return int(config.get("train", {}).get("epochs", 1))


def _ran(trial) -> int | None:
    attrs = trial.user_attrs
    value = attrs.get(studies.HORIZON, attrs.get(studies.EPOCHS_RUN,
                                                  attrs.get(studies.STOPPED_AT_EPOCH)))
    return int(value) if isinstance(value, (int, float)) else None


def checkpoint_of(trial) -> str | None:
    """The newest checkpoint folder of a finished trial that holds the trainer's last.pt."""
    folder = trial.user_attrs.get(studies.TRIAL_DIR)
    if not folder or not Path(folder).is_dir():
        return None
    found = sorted(p for p in Path(folder).glob("checkpoint_*") if (p / "last.pt").is_file())
    return str(found[-1]) if found else None


def plan_extension(study, space: Any, budget: Budget) -> Extension:
    """Which finished trials continue (see the module docstring); a UserError when none can."""
    from optuna.trial import TrialState

    share = keep_share(space)
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if not trials:
        raise UserError(f"--extend: study {study.study_name} has no finished trial to extend; "
                        "run the search without --extend first")
    horizons = {t.number: horizon_of(space, budget, t.params) for t in trials}
    shorter = [t for t in trials if (_ran(t) or 0) < horizons[t.number]]
    extended = {t.user_attrs.get(EXTENDS) for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get(EXTENDS) is not None and t.state != TrialState.FAIL}
    if not shorter:
        top = max(horizons.values())
        raise UserError(f"--extend: every finished trial of study {study.study_name} already ran "
                        f"its {top} epochs; raise budget.max_epochs (and train.epochs where it is "
                        "lower) first")
    out = Extension(max(horizons[t.number] for t in shorter), len(shorter), share)
    keep = min(max(1, math.ceil(share * len(shorter))), max(1, budget.trials))
    sign = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0
    ranked = sorted((t for t in shorter if t.state == TrialState.COMPLETE
                     and t.number not in extended),
                    key=lambda t: (sign * t.values[0], t.number))
    for t in ranked[:keep]:
        checkpoint = checkpoint_of(t)
        if checkpoint is None:
            out.missing += 1
        else:
            out.chosen.append((t.number, checkpoint))
    if not out.chosen:
        raise UserError(f"--extend: none of the {keep} best trials of study {study.study_name} "
                        "that ran fewer epochs has a checkpoint left (tracking.keep_checkpoints "
                        "keeps the best ones); run without --extend to train afresh")
    return out


def enqueue(study, extension: Extension) -> None:
    """The continuations, first in line for the run's searcher (same parameters)."""
    trials = study.get_trials(deepcopy=False)
    for number, checkpoint in extension.chosen:
        study.enqueue_trial(dict(trials[number].params),
                            user_attrs={EXTENDS: number, RESUME_FROM: checkpoint},
                            skip_if_exists=False)


def is_continuation(trial) -> bool:
    return (getattr(trial, "config", None) or {}).get(EXTENDS_KEY) is not None


def sparing(scheduler):
    """The run's scheduler, letting continued trials go on to their horizon (they were picked
    by the pruner's rule already); every other trial is its business as before."""
    from ray.tune.schedulers import TrialScheduler

    class Sparing(TrialScheduler):
        def __init__(self, inner) -> None:
            self.inner = inner

        @property
        def metric(self):
            return self.inner.metric

        @property
        def supports_buffered_results(self) -> bool:
            return self.inner.supports_buffered_results

        def set_search_properties(self, metric, mode, **spec) -> bool:
            return self.inner.set_search_properties(metric, mode, **spec)

        def on_trial_add(self, tune_controller, trial) -> None:
            if not is_continuation(trial):
                self.inner.on_trial_add(tune_controller, trial)

        def on_trial_error(self, tune_controller, trial) -> None:
            if not is_continuation(trial):
                self.inner.on_trial_error(tune_controller, trial)

        def on_trial_result(self, tune_controller, trial, result) -> str:
            if is_continuation(trial):
                return TrialScheduler.CONTINUE
            return self.inner.on_trial_result(tune_controller, trial, result)

        def on_trial_complete(self, tune_controller, trial, result) -> None:
            if not is_continuation(trial):
                self.inner.on_trial_complete(tune_controller, trial, result)

        def on_trial_remove(self, tune_controller, trial) -> None:
            if not is_continuation(trial):
                self.inner.on_trial_remove(tune_controller, trial)

        def choose_trial_to_run(self, tune_controller):
            return self.inner.choose_trial_to_run(tune_controller)

        def debug_string(self) -> str:
            return self.inner.debug_string()

        def save(self, checkpoint_path: str) -> None:
            self.inner.save(checkpoint_path)

        def restore(self, checkpoint_path: str) -> None:
            self.inner.restore(checkpoint_path)

    return Sparing(scheduler)
