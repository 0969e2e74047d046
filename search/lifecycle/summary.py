"""Texts a finished (or running) search prints: the top-trials table, the status of a study,
and the best configuration as a space file that `search run` takes back."""
from __future__ import annotations

import math
from typing import Any, Sequence

from search.studies import study as studies
from search.lifecycle.plan import Objective
from search.errors import UserError


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if (v == 0 or 1e-3 <= abs(v) < 1e4) and math.isfinite(v) \
            else f"{v:.3g}"
    return str(v)


SIGNIFICANT = 4  # digits of a column's smallest value that a table shows
MISSING = "-"


def column_texts(values: Sequence[Any]) -> tuple[list[str], bool]:
    """A table column: (its cells, whether they are numbers and right-aligned). Numbers share
    one format: integers as they are; fractions with the same decimals (enough for
    SIGNIFICANT digits of the smallest one), or all in scientific notation when they span too
    many orders of magnitude for that; None as "-"."""
    present = [v for v in values if v is not None]
    numbers = bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                    for v in present)
    if not numbers:
        return [MISSING if v is None else _num(v) for v in values], False
    finite = [abs(float(v)) for v in present if math.isfinite(float(v))]
    if all(isinstance(v, int) for v in present):
        fmt = "{:d}"
    else:
        small = min((v for v in finite if v > 0), default=1.0)
        large = max(finite, default=1.0)
        decimals = max(0, SIGNIFICANT - 1 - math.floor(math.log10(small)))
        fmt = f"{{:.{decimals}f}}" if decimals <= 6 and large < 1e6 else \
            f"{{:.{SIGNIFICANT - 1}e}}"
    return [MISSING if v is None else fmt.format(v) if math.isfinite(float(v)) else str(v)
            for v in values], True


def aligned(head: Sequence[str], columns: Sequence[Sequence[Any]]) -> str:
    """Rows of a table with its head: numbers right-aligned, one format per column."""
    cells, right = zip(*(column_texts(c) for c in columns)) if columns else ((), ())
    widths = [max([len(h), *(len(c) for c in col)]) for h, col in zip(head, cells)]
    lines = []
    for i in range(-1, len(cells[0]) if cells else 0):
        row = head if i < 0 else [col[i] for col in cells]
        lines.append("  ".join(c.rjust(w) if r else c.ljust(w)
                               for c, w, r in zip(row, widths, right)).rstrip())
    return "\n".join(lines)


def trial_table(trials: Sequence, objectives: Sequence[Objective], limit: int = 5) -> str:
    """The trials as an aligned table: number, state, objectives, test accuracy, epochs run,
    then one column per parameter under its full name (as in the space and the study)."""
    trials = list(trials)[:limit]
    names: list[str] = []
    for t in trials:
        names += [k for k in t.params if k not in names]
    head = ["#", "state", *(o.metric for o in objectives), studies.TEST_ACCURACY, "epochs",
            *names]
    columns: list[list[Any]] = [[t.number for t in trials], [t.state.name for t in trials]]
    for i in range(len(objectives)):
        columns.append([t.values[i] if t.values and i < len(t.values) else None
                        for t in trials])
    columns.append([t.user_attrs.get(studies.TEST_ACCURACY) for t in trials])
    columns.append([t.user_attrs.get(studies.EPOCHS_RUN, t.user_attrs.get(
        studies.STOPPED_AT_EPOCH)) for t in trials])
    for name in names:
        columns.append([t.params.get(name) for t in trials])
    return aligned(head, columns)


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
    seeds = "; ".join(f"{o.metric} = {_num(v)}{spread_text(best[0], o.metric)}"
                      for o, v in zip(objectives, best[0].values or [])
                      if spread_text(best[0], o.metric))
    if seeds:
        lines.append(f"trial #{best[0].number}: {seeds}")
    return "\n".join(lines)


def folds_text(trial) -> str | None:
    """How many folds a k-fold trial ran and each fold's score (None without k-fold)."""
    scores = trial.user_attrs.get("fold_val_accuracy")
    if not scores:
        return None
    mean = sum(scores) / len(scores)
    return (f"{trial.user_attrs.get('folds', len(scores))} folds ran; val_accuracy per fold "
            f"{', '.join(_num(v) for v in scores)} (mean {_num(mean)})")


def spread_text(trial, metric: str) -> str:
    """With budget.seeds > 1: " ± std (mean of K seeds: v1, v2, ...)" after the objective's
    value (the plain mean said when the objective is penalised); "" otherwise."""
    values = trial.user_attrs.get(f"{metric}_seeds")
    std = trial.user_attrs.get(f"{metric}_std")
    if not values or std is None:
        return ""
    mean = trial.user_attrs.get(f"{metric}_mean")
    how = f"penalised from the mean {_num(mean)}; " if mean is not None else "mean of "
    return (f" ± {_num(std)} ({how}{len(values)} seeds: "
            f"{', '.join(_num(v) for v in values)})")


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
                     + spread_text(t, objectives[0].metric)
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
    values = ", ".join(f"{_num(v)}{spread_text(trial, o.metric)}"
                       for v, o in zip(trial.values or [], space.objectives))
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


def opening(space: Any, *, output: str | None = None, storage: str | None = None,
            tracking_uri: str | None = None, cpus: int | None = None,
            address: str | None = None) -> str:
    """What `search run` prints first, before Ray or MLflow start: the trials planned, how
    many run at once, where the results go and the commands that watch them."""
    import os

    from search.lifecycle.plan import concurrency
    from search.lifecycle.runs import output_dir

    budget, res = space.budget, space.resources
    folder = output_dir(space.name, output)
    each = f"{res.cpu:g} CPU" + (f" + {res.gpu:g} GPU" if res.gpu else "") + \
        (f" for each of {budget.seeds} seeds" if budget.seeds > 1 else " each")
    if address or os.environ.get("RAY_ADDRESS") or res.gpu:
        cap = f"up to {min(res.max_concurrent, budget.trials)}" if res.max_concurrent else \
            "as many as the cluster holds"
        at_once = f"{cap} at a time ({each})"
    else:
        try:
            slots = concurrency(res, {"CPU": float(cpus or os.cpu_count() or 1)},
                                seeds=budget.seeds)
        except UserError:  # said with its reason once Ray is up
            slots = 1
        at_once = f"up to {min(slots, budget.trials)} at a time ({each}, " \
                  f"{cpus or os.cpu_count()} CPUs here)"
    objective = ", ".join(f"{o.metric} ({o.mode})" for o in space.objectives)
    lines = [f"search {space.name}: {budget.trials} trials of at most "
             f"{budget.max_epochs} epochs, {at_once}, for {objective}; results in "
             f"{folder}"]
    where = [f"study {studies.shown(studies.storage_url(storage, folder))}"]
    tracked = space.tracking.enabled
    if tracked:
        from search.tracking.backend import redact, resolve_uri

        space_uri = space.tracking.uri
        where.append(f"MLflow {redact(resolve_uri(tracking_uri, space_uri, folder))}")
    lines.append("  " + ", ".join(where))
    name = space.name if output is None else f"--output {folder}"
    watch = [f"search status {name}"] + ([f"search ui {name}"] if tracked else []) + \
        [f"search dashboard {name}"]
    lines.append("  watch it with: " + " | ".join(watch))
    return "\n".join(lines)
