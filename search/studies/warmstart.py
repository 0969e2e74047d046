"""Continuing a space's study after the space changed: the warm start of scheduled re-runs.

A `search run` of a space whose study exists continues it. The study remembers the space of its
last run (a fingerprint of the searched distributions and the fixed settings, as study user
attributes). When the space changed since:

- the k best COMPLETE configs of the study (by the first objective) that are still valid in the
  new space are enqueued (`study.enqueue_trial`), so the sampler hands them out first and they
  are measured under the new settings; a config whose value no longer fits a parameter, or that
  breaks the space's rules, is skipped with a note naming the parameter. A parameter the new
  space added is left to the sampler; one it dropped is dropped from the config.
- a parameter whose distribution changed continues in a successor study `<name>@<n>`: the
  earlier trials that fit the new space are copied into it with the new distributions (the
  sampler starts informed), the old study is left as it was and points to the new one
  (`search status NAME` follows the chain). One study cannot hold both, checked on Optuna 5:
  its storage refuses a categorical whose choices changed or a parameter whose type or log
  scale changed (`CategoricalDistribution does not support dynamic value space`, any sampler);
  a changed range is accepted, but multivariate TPE's joint model keeps the range first
  recorded in the study, so its samples of that parameter fall outside the new range and it is
  sampled on its own from then on. Parameters only added or removed stay in the study.

An unchanged space enqueues nothing: its trials are in the study, and the sampler draws knowing
them. Enqueued trials count in the run's budget; Optuna would run an enqueued value outside its
distribution with only a warning, which is why every value is checked here first.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from search.studies import study as studies
from search.errors import UserError

FINGERPRINT = "search.space_fingerprint"  # study user attrs
LAST_RUN = "search.last_run"
PREVIOUS_STUDY = "search.previous_study"
WARM_FROM = "warm_start_from"  # trial user attrs: the earlier trial it repeats / was copied from
COPIED_FROM = "copied_from"


@dataclass
class WarmStart:
    """How this run continues its study."""

    study: Any                      # the study the run writes to
    changed: bool = False           # the space differs from the one of the study's last run
    previous: dict | None = None    # that run (LAST_RUN): run_id, output, mlflow_run_id, ...
    enqueued: list[int] = field(default_factory=list)  # earlier trials whose configs go first
    notes: list[str] = field(default_factory=list)     # skipped configs, a successor study
    considered: int = 0             # the k best distinct earlier configs (or fewer)

    def lines(self) -> list[str]:
        """What to tell the user (nothing for a fresh or unchanged study)."""
        if not self.changed:
            return []
        since = f" since {self.previous['run_id']}" if self.previous else ""
        what = "no earlier config enqueued" if not self.considered else (
            f"enqueued {len(self.enqueued)} of the {self.considered} best earlier configs, to "
            "run first" + (f" (trials {', '.join(f'#{n}' for n in self.enqueued)})"
                           if self.enqueued else ""))
        return [f"warm start: the space changed{since}; {what}",
                *(f"warm start: {note}" for note in self.notes)]

    def record(self) -> dict:
        return {"study": self.study.study_name, "changed": self.changed,
                "considered": self.considered, "enqueued": self.enqueued, "notes": self.notes}


# ------------------------------------------------------------------------------- the space
def declared(space: Any) -> dict | None:
    """Every Optuna parameter of the space with its distribution (None when unknown)."""
    params = getattr(space, "params", None)
    if params is not None:
        return {p.name: p.distribution for p in params if p.distribution is not None}
    return space.distributions() if hasattr(space, "distributions") else None


def fingerprint(space: Any) -> str:
    """Changes when what a trial measures can change: the searched distributions (and their
    conditions) or the fixed settings. Budget, sampler and tracking changes do not count."""
    from optuna.distributions import distribution_to_json

    params = getattr(space, "params", None)
    if params is not None:
        searched = [[p.name, distribution_to_json(p.distribution), repr(p.condition)]
                    for p in params if p.distribution is not None]
    else:
        searched = sorted([n, distribution_to_json(d)]
                          for n, d in (declared(space) or {}).items())
    doc = {"searched": searched, "fixed": space.fixed}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=repr).encode()).hexdigest()


def recorded(study) -> dict:
    """The latest distribution of every parameter in the study's trials."""
    out: dict = {}
    for t in study.get_trials(deepcopy=False):
        out.update(t.distributions)
    return out


def changed(old: dict, new: dict) -> dict[str, str]:
    """Parameters whose distribution changed: name -> why one study should not hold both
    (Optuna's reason when its storage would refuse them)."""
    from optuna.distributions import check_distribution_compatibility

    out = {}
    for name in sorted(old.keys() & new.keys()):
        if old[name] == new[name]:
            continue
        try:
            check_distribution_compatibility(old[name], new[name])
            out[name] = f"{domain(old[name])} -> {domain(new[name])}"
        except ValueError as err:
            out[name] = str(err).strip().rstrip(".")
    return out


def domain(dist) -> str:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return f"choices {list(dist.choices)}"
    extra = ", log" if dist.log else ""
    if dist.step is not None and not (isinstance(dist, IntDistribution) and dist.step == 1):
        extra += f", step {dist.step:g}"
    return f"range [{dist.low:g}, {dist.high:g}]{extra}"


# ------------------------------------------------------------------------------- one config
class Misfit(Exception):
    def __init__(self, name: str, value: Any, dist) -> None:
        shown = f"{value:.6g}" if isinstance(value, float) else repr(value)
        super().__init__(f"{name} = {shown} is not in the new {domain(dist)}")
        self.name = name


class ReplayTrial:
    """Stands in for an Optuna trial in `space.define_by_run`: each parameter the new space
    asks for gets the earlier config's value, which must lie in the new distribution (Misfit
    otherwise); one the earlier config lacks gets a placeholder and is left to the sampler."""

    def __init__(self, earlier: dict) -> None:
        self.earlier = earlier
        self.params: dict = {}  # what define_by_run saw (placeholders included)
        self.kept: dict = {}    # the earlier values that fit, as the new distributions hold them
        self.missing: list[str] = []

    def _suggest(self, name: str, dist) -> Any:
        if name not in self.earlier:
            self.missing.append(name)
            value = dist.choices[0] if hasattr(dist, "choices") else dist.low
        else:
            from spaces.optuna_private import contains

            try:
                internal = dist.to_internal_repr(self.earlier[name])
                fits = contains(dist, internal)
            except (ValueError, TypeError):
                fits = False
            if not fits:
                raise Misfit(name, self.earlier[name], dist)
            value = self.kept[name] = dist.to_external_repr(internal)
        self.params[name] = value
        return value

    def suggest_float(self, name, low, high, *, step=None, log=False):
        from optuna.distributions import FloatDistribution

        return self._suggest(name, FloatDistribution(low, high, step=step, log=log))

    def suggest_int(self, name, low, high, *, step=1, log=False):
        from optuna.distributions import IntDistribution

        return self._suggest(name, IntDistribution(low, high, step=step, log=log))

    def suggest_categorical(self, name, choices):
        from optuna.distributions import CategoricalDistribution

        return self._suggest(name, CategoricalDistribution(choices))

    def set_user_attr(self, key, value) -> None:
        pass


def replay(space: Any, params: dict) -> tuple[dict | None, str | None]:
    """(the params to enqueue, None) when an earlier config is valid in `space`, else (None,
    why not). A config with new parameters is checked against the space's rules only once the
    sampler has filled them in (the searcher records a breaking one as FAIL and asks again)."""
    probe = ReplayTrial(params)
    try:
        space.define_by_run(probe)
    except Misfit as err:
        return None, str(err)
    except UserError as err:
        if not probe.missing:
            return None, f"its config breaks the space's rules ({str(err).splitlines()[0]})"
    return probe.kept, None


# ------------------------------------------------------------------------------- the study
def continue_study(storage, space: Any, directions: list[str], metrics: list[str], *,
                   best: int = 3, new: bool = False) -> WarmStart:
    """Open (or create) the space's study for a run and warm-start it when the space changed:
    see the module docstring. `best` is k (0: enqueue nothing)."""
    if new:
        studies.delete_chain(storage, space.name)
    name = studies.current_name(storage, space.name)
    study = studies.open_study(storage, name, directions)
    studies.name_metrics(study, metrics)
    start = WarmStart(study, previous=study.user_attrs.get(LAST_RUN))
    had = study.user_attrs.get(FINGERPRINT)
    now = fingerprint(space)
    new_dists, old_dists = declared(space), {}
    if study.get_trials(deepcopy=False):
        old_dists = recorded(study)
        start.changed = had != now if had is not None else new_dists is not None and (
            any(old_dists[n] != d for n, d in new_dists.items() if n in old_dists)
            or bool(old_dists.keys() - new_dists.keys()))
    if start.changed and new_dists is not None:
        moved = changed(old_dists, new_dists)
        if moved:
            start.study = successor(storage, study, space, directions, moved, start.notes)
    start.study.set_user_attr(FINGERPRINT, now)  # a second driver of this space: unchanged
    if start.changed and best > 0:
        enqueue_best(study, start.study, space, best, start)
    return start


def successor(storage, old, space: Any, directions: list[str], moved: dict[str, str],
              notes: list[str]):
    """The study `<name>@<n+1>` that continues `old`, holding the earlier trials that fit the
    new space. Made once: a driver that finds it already made (a concurrent run) just opens it."""
    import optuna
    from optuna.exceptions import DuplicatedStudyError

    base, _, generation = old.study_name.partition("@")
    name = f"{base}@{int(generation or 1) + 1}"
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions)
    except DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage)
    if old.metric_names:
        studies.name_metrics(study, old.metric_names)
    copied = copy_fitting(old, study, space)
    study.set_user_attr(PREVIOUS_STUDY, old.study_name)
    old.set_user_attr(studies.CONTINUED_IN, name)
    why = "; ".join(f"{n}: {r}" for n, r in moved.items())
    notes.append(f"changed distributions ({why}): the search continues in study {name}, with "
                 f"the {copied} earlier trials of {old.study_name} that fit the new space")
    return study


def copy_fitting(old, study, space: Any) -> int:
    """Copy old's COMPLETE and PRUNED trials whose every value fits the new space (with the new
    distributions, values, intermediate values and user attributes)."""
    import optuna
    from optuna.trial import TrialState

    new_dists = declared(space) or {}
    copies = []
    for t in old.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        kept, why = replay(space, t.params)
        if why is not None or not kept or any(n not in new_dists for n in kept):
            continue
        copies.append(optuna.trial.create_trial(
            state=t.state, values=t.values if t.state == TrialState.COMPLETE else None,
            params=kept, distributions={n: new_dists[n] for n in kept},
            intermediate_values=dict(t.intermediate_values),
            user_attrs={**t.user_attrs, COPIED_FROM: f"{old.study_name}#{t.number}"}))
    study.add_trials(copies)
    return len(copies)


def enqueue_best(source, study, space: Any, k: int, start: WarmStart) -> None:
    """Enqueue those of the k best distinct configs of `source` that are valid in `space` into
    `study` (not twice: configs an earlier warm start left waiting are not enqueued again)."""
    from optuna.trial import TrialState

    waiting = [t.system_attrs.get("fixed_params") for t in
               study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
    best: list = []
    for t in studies.ranked(source):
        if len(best) < k and all(t.params != b.params for b in best):
            best.append(t)
    start.considered = len(best)
    for t in best:
        kept, why = replay(space, t.params)
        if why is not None:
            start.notes.append(f"skipped trial #{t.number} of study {source.study_name}: {why}")
            continue
        if kept not in waiting:
            study.enqueue_trial(kept, user_attrs={WARM_FROM: f"{source.study_name}#{t.number}"})
        start.enqueued.append(t.number)


def record_run(study, info: dict) -> None:
    """Remember this run in the study, for the next run's link to its previous one."""
    study.set_user_attr(LAST_RUN, info)
