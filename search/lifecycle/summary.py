"""Texts a finished (or running) search prints: the top-trials table, the status of a study,
and the best configuration as a space file that `search run` takes back."""
from __future__ import annotations

import math
from typing import Any, Sequence

from search.studies import study as studies
from search.lifecycle.plan import Objective


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if (v == 0 or 1e-3 <= abs(v) < 1e4) and math.isfinite(v) \
            else f"{v:.3g}"
    return str(v)


def trial_table(trials: Sequence, objectives: Sequence[Objective], limit: int = 5) -> str:
    """The trials as an aligned table: number, state, objectives, test accuracy, params."""
    head = ["#", "state", *(o.metric for o in objectives), "test_acc", "epochs", "params"]
    rows = []
    for t in list(trials)[:limit]:
        values = list(t.values or [])
        row = [str(t.number), t.state.name]
        row += [_num(values[i]) if i < len(values) else "-" for i in range(len(objectives))]
        attrs = t.user_attrs
        row += [_num(attrs.get(studies.TEST_ACCURACY, "-")),
                _num(attrs.get(studies.EPOCHS_RUN, attrs.get(studies.STOPPED_AT_EPOCH, "-"))),
                ", ".join(f"{k.split('.')[-1] if len(k) > 24 else k}={_num(v)}"
                          for k, v in t.params.items())]
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = []
    for r in [head, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return "\n".join(lines)


def run_summary(study, run_id: str, objectives: Sequence[Objective], limit: int = 5) -> str:
    counts = studies.counts(studies.of_run(study.get_trials(deepcopy=False), run_id))
    lines = [f"run {run_id}: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)]
    best = studies.best_trials(study)
    if not best:
        lines.append("no trial completed yet")
        return "\n".join(lines)
    if len(objectives) > 1:
        lines.append(f"Pareto front of study {study.study_name} ({len(best)} trials):")
        lines.append(trial_table(best, objectives, limit=len(best)))
    else:
        lines.append(f"top trials of study {study.study_name} (all runs):")
        lines.append(trial_table(studies.ranked(study, limit), objectives, limit))
    split = best[0].user_attrs.get("split")
    lines.append(f"best: trial #{best[0].number}; its config: search best {study.study_name}"
                 + (f"\ntest split: {split}" if split else ""))
    if folds_text(best[0]):
        lines.append(f"trial #{best[0].number}: {folds_text(best[0])}")
    return "\n".join(lines)


def folds_text(trial) -> str | None:
    """How many folds a k-fold trial ran and each fold's score (None without k-fold)."""
    scores = trial.user_attrs.get("fold_val_accuracy")
    if not scores:
        return None
    mean = sum(scores) / len(scores)
    return (f"{trial.user_attrs.get('folds', len(scores))} folds ran; val_accuracy per fold "
            f"{', '.join(_num(v) for v in scores)} (mean {_num(mean)})")


def continues(trial) -> str:
    """How a continued trial (`search run --extend`) names the trial it continues."""
    number = trial.user_attrs.get(studies.EXTENDS)
    return "" if number is None else (f"; continues #{number} to "
                                      f"{trial.user_attrs.get(studies.HORIZON, '?')} epochs")


def status_text(study, objectives: Sequence[Objective], runs: list[dict]) -> str:
    counts = studies.counts(study.get_trials(deepcopy=False))
    lines = [f"study {study.study_name}: {len(study.trials)} trials: "
             + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)]
    best = studies.best_trials(study)
    if best and len(objectives) == 1:
        t = best[0]
        test = t.user_attrs.get(studies.TEST_ACCURACY)
        split = t.user_attrs.get("split")
        lines.append(f"best: trial #{t.number} {objectives[0].metric} = {_num(t.values[0])}"
                     + (f", test_accuracy = {_num(test)}" if test is not None else "")
                     + (f" (split: {split})" if split else "") + continues(t))
        if folds_text(t):
            lines.append(f"trial #{t.number}: {folds_text(t)}")
    elif best:
        lines.append(f"Pareto front: trials {', '.join('#' + str(t.number) for t in best)}")
    else:
        lines.append("best: none completed yet")
    for info in runs:
        lines.append(f"run {info['run_id']}: {info['state']}")
    return "\n".join(lines)


def best_space(space: Any, config: dict, trial, study_name: str) -> str:
    """A space file fixing every setting to `config` (the trial's resolved settings): no
    `space:` section, one trial, no pruning; objective, resources, tracking and stages kept."""
    from spaces.yamlio import dump_yaml
    from trainers.catalog import GROUPS, defaults

    selected = {g: config[g][grp.selector] for g, grp in GROUPS.items()
                if grp.selector and g in config}
    base = defaults(selected)
    doc: dict[str, Any] = {"name": f"{space.name}-best",
                           "description": f"trial #{trial.number} of study {study_name}",
                           "seed": space.seed}
    if getattr(space, "fit", None):
        doc["fit"] = space.fit
    for gname, grp in GROUPS.items():
        values = {k: v for k, v in config.get(gname, {}).items()
                  if k == grp.selector or base[gname].get(k) != v}
        if values:
            doc[gname] = values
    if config.get("params"):  # the fit function's own parameters
        doc["params"] = config["params"]
    written = space.sections()
    doc.update(objective=written["objective"], budget={**written["budget"], "trials": 1},
               sampler={"name": "random"}, pruner={"name": "none"},
               resources=written["resources"], tracking=written["tracking"],
               stages=written["stages"])
    values = ", ".join(f"{_num(v)}" for v in trial.values or [])
    test = trial.user_attrs.get(studies.TEST_ACCURACY)
    head = (f"# best trial #{trial.number} of study {study_name}: objective {values}"
            + (f", test_accuracy {_num(test)}" if test is not None else "")
            + continues(trial) + f"\n# run it again with: search run <this file>\n")
    checkpoint = best_checkpoint(trial)
    if checkpoint:
        head += f"# its weights: {checkpoint}\n"
    return head + dump_yaml(doc, flow_leaves=True)


def best_checkpoint(trial) -> str | None:
    """The trainer's best.pt of a finished trial (kept in its last Tune checkpoint)."""
    from pathlib import Path

    folder = trial.user_attrs.get(studies.TRIAL_DIR)
    if not folder or not Path(folder).is_dir():
        return None
    found = sorted(Path(folder).glob("checkpoint_*/best.pt"))
    return str(found[-1]) if found else None
