"""The persistent Optuna study: where it lives, opening it, and reading it back.

One study per space name, in an RDB (SQLite file `<output>/study.db` by default, PostgreSQL for
clusters). Only the driver writes to it. Every trial carries user attributes that tie it to Ray
Tune: `tune_trial_id`, `run_id` (the Tune experiment folder), and after it ends `fail_reason`,
`test_accuracy`, `num_params`, `selected_epoch`, `trial_dir`. Browse a study with
`search dashboard NAME` (optuna-dashboard).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from search import urls
from search.errors import UserError

ENV_STORAGE = "SEARCH_STORAGE"

# Optuna trial user attributes this service writes and reads back (the searcher, a resume, the
# stages, the summaries and tracking all read them by these names; search/tune/searcher.py copies the
# RECORDED result keys of search/tune/trainable.py under the same names).
RUN_ID = "run_id"                      # the search run that asked the trial
TUNE_TRIAL_ID = "tune_trial_id"        # the Tune trial running it; "" once orphaned
ORPHAN_OF = "orphan_of"                # the Tune id of an orphaned trial
STOPPED_AT_EPOCH = "stopped_at_epoch"  # the last epoch Tune saw
MLFLOW_RUN_ID = "mlflow_run_id"        # the trial's MLflow child run
TRIAL_DIR = "trial_dir"                # the trial's folder (its checkpoints)
TEST_ACCURACY = "test_accuracy"        # of the selected model, measured once at the end
EPOCHS_RUN = "epochs_run"
HORIZON = "horizon"                    # the epochs the trial was planned to run (train.epochs)
# budget.seeds > 1 (search/tune/seeds.py): the trial's seeds; per objective also
# `<metric>_std`, `<metric>_seeds` (each seed's value) and, penalised, `<metric>_mean`
SEEDS = "seeds"
# A trial continuing a finished trial to a longer horizon (`search run --extend`,
# search/lifecycle/extend.py): the number of the trial it continues.
EXTENDS = "extends"
FAIL_REASON = "fail_reason"
# Study user attr: the study that continues this one after a parameter's distribution changed
# (search/studies/warmstart.py); `<name>`, `<name>@2`, `<name>@3`, ...
CONTINUED_IN = "search.continued_in"
# Trial user attrs of a trial a dead driver left RUNNING (search/lifecycle/runner.py `settle`): the
# checkpoint folder its next Tune trial starts from, and the Tune id it first ran under (its
# MLflow run's key, so the run continues rather than a second one starting).
RESUME_FROM, FIRST_TUNE_ID = "resume_from", "first_tune_id"


def storage_url(flag: str | None, output: Path) -> str:
    """--storage, else $SEARCH_STORAGE, else an SQLite file in the output folder, as it may be
    recorded: its password masked (search/urls.py; `open_storage` puts it back). SQLite paths
    are made absolute (a resume may start elsewhere); a bare postgresql:// gets the driver that
    is installed (urls.with_driver)."""
    url = (flag or os.environ.get(ENV_STORAGE) or "").strip()
    if not url:
        return f"sqlite:///{(Path(output).absolute() / 'study.db')}"
    if url.startswith("sqlite") and url.partition(":///")[2] in ("", ":memory:"):
        raise UserError(f"--storage {url}: names no database file (an in-memory study would end "
                        "with this process); use sqlite:////absolute/path/study.db")
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):]).expanduser().absolute()
        if not path.parent.is_dir():  # a typo must not leave a tree of new folders behind
            raise UserError(f"--storage {url}: the folder {path.parent} does not exist; create "
                            "it first or fix the path")
        return f"sqlite:///{path}"
    return urls.remember(urls.with_driver(url))


def shown(url: str) -> str:
    """A storage URL for messages, with any password hidden."""
    return urls.mask_url(url)


def open_storage(url: str):
    """An RDBStorage for `url`; a UserError naming the URL when it cannot be reached."""
    import optuna
    import sqlalchemy.exc

    kwargs: dict[str, Any] = {}
    shown_url, url = shown(url), urls.reveal(urls.with_driver(url))
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # `search status` may read while a run writes: wait for the lock instead of failing.
        kwargs = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
        kwargs = {"pool_pre_ping": True}
    try:
        from search.studies.rdb import SecretFreeStorage

        storage = SecretFreeStorage(url, engine_kwargs=kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--storage {shown_url}: cannot open the study database ({reason}); "
                        "check the URL, that the server is up, and its driver is installed") \
            from None
    if url.startswith("sqlite"):
        _fast_sqlite(storage.engine)
    return storage


def _fast_sqlite(engine) -> None:
    """WAL journal and NORMAL sync: a reader (`search status`) never blocks the run, and a
    write per epoch costs no fsync; a killed process still loses nothing committed."""
    import sqlalchemy

    def pragmas(dbapi_connection, record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    engine.dispose()  # connections opened while creating the tables lack the pragmas
    sqlalchemy.event.listen(engine, "connect", pragmas)


def study_names(storage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def open_study(storage, name: str, directions: list[str], sampler=None, *, new: bool = False):
    """Create the study, or continue the one of that name (`new` deletes it first)."""
    import optuna

    if new and name in study_names(storage):
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                directions=directions, load_if_exists=True)
    have = [d.name.lower() for d in study.directions]
    if have != [d.lower() for d in directions]:
        raise UserError(f"study {name!r}: exists with directions {have}, the space asks for "
                        f"{directions}; run with --new to start a fresh study, or rename the "
                        "space")
    return study


def name_metrics(study, metrics: list[str]) -> None:
    """Name the objectives in the study (status, the dashboard and `search best` show them)."""
    import warnings

    if study.metric_names and study.metric_names != metrics:
        raise UserError(f"study {study.study_name!r}: its trials optimise {study.metric_names}, "
                        f"the space asks for {metrics}; run with --new to start a fresh study, "
                        "or rename the space")
    if study.metric_names != metrics:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.set_metric_names(metrics)


def current_name(storage, name: str) -> str:
    """The study a space's runs go to now: `name`, or its latest successor."""
    seen = {name}
    while name in study_names(storage):
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
        nxt = attrs.get(CONTINUED_IN)
        if not nxt or nxt in seen:
            break
        seen.add(nxt)
        name = nxt
    return name


def delete_chain(storage, name: str) -> None:
    """Delete the space's study and its successors (`--new`)."""
    import optuna

    names = study_names(storage)
    for study_name in names:
        if study_name == name or study_name.startswith(f"{name}@"):
            optuna.delete_study(study_name=study_name, storage=storage)


def load_study(storage, name: str, sampler=None):
    """An existing study; a UserError listing the studies there when it does not exist."""
    import difflib

    import optuna

    names = study_names(storage)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        have = ", ".join(sorted(names)) or "none"
        raise UserError(f"study {name!r}: not found in {shown(storage.url)}; studies there: "
                        f"{have}{hint}")
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler)


def of_run(trials: Iterable, run_id: str) -> list:
    return [t for t in trials if t.user_attrs.get(RUN_ID) == run_id]


def counts(trials: Iterable) -> dict[str, int]:
    out = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def front_key(directions: Sequence) -> Callable[[Any], tuple]:
    """The order of "best" with any number of objectives: by the first objective, ties by the
    next ones, then by the lower trial number. The best (its minimum) is always on the Pareto
    front, so ordering the front by this key puts the best first."""
    signs = [-1.0 if getattr(d, "name", d) in ("MAXIMIZE", "maximize") else 1.0
             for d in directions]
    return lambda t: (*[s * v for s, v in zip(signs, t.values)], t.number)


def pareto_front(trials: Sequence, directions: Sequence) -> list:
    """The COMPLETE trials no other COMPLETE trial dominates, best first (front_key)."""
    signs = [-1.0 if getattr(d, "name", d) in ("MAXIMIZE", "maximize") else 1.0
             for d in directions]
    done = [t for t in trials if t.state.name == "COMPLETE" and t.values
            and not any(math.isnan(v) for v in t.values)]
    cost = {t.number: [s * v for s, v in zip(signs, t.values)] for t in done}

    def dominates(a, b) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    front = [t for t in done if not any(dominates(cost[o.number], cost[t.number])
                                        for o in done)]
    return sorted(front, key=front_key(directions))


def best_trials(study) -> list:
    """The best trial (one objective) or the Pareto front (several), best first: the one
    definition of "best" every command, MLflow, the registry and the stages use; [] before any
    trial completes."""
    front = pareto_front(study.get_trials(deepcopy=False), study.directions)
    return front if len(study.directions) > 1 else front[:1]


def ranked(study, limit: int | None = None) -> list:
    """Completed trials, best first by the first objective."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0
    done = sorted(done, key=lambda t: (sign * t.values[0], t.number))
    return done[:limit] if limit else done


def ask(study, run_id: str):
    """`study.ask()` for run `run_id`. A new trial is created with its `run_id` in the same
    transaction: asked then labelled, a driver killed in between (sampling lies between the two)
    left a RUNNING trial that no run owned and no resume settled. An enqueued trial (a warm
    start's) is popped by Optuna itself and labelled after; only those keep that small window."""
    import datetime

    from optuna.trial import FrozenTrial, TrialState

    from spaces import optuna_private

    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial = study.ask()
        trial.set_user_attr(RUN_ID, run_id)
        return trial
    template = FrozenTrial(number=-1, state=TrialState.RUNNING, value=None,
                           datetime_start=datetime.datetime.now(), datetime_complete=None,
                           params={}, distributions={}, user_attrs={RUN_ID: run_id},
                           system_attrs={}, intermediate_values={}, trial_id=-1)
    return optuna_private.create_trial(study, template)


def live(study, number: int):
    """The writable Trial of a RUNNING trial, from its number alone (after a restart the
    Trial objects `ask` returned are gone; the storage id is the only way back to one)."""
    from spaces import optuna_private

    return optuna_private.writable_trial(study, study.get_trials(deepcopy=False)[number])


def fail(study, number: int, reason: str) -> None:
    """End a RUNNING trial as FAIL, recording why (user attrs must be set before the tell)."""
    from optuna.trial import TrialState

    if study.get_trials(deepcopy=False)[number].state.is_finished():
        return
    live(study, number).set_user_attr(FAIL_REASON, reason[:1000])
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def fail_leftovers(study, run_id: str, reason: str) -> int:
    """Mark the run's trials still RUNNING as FAIL: after a run ends nothing may stay RUNNING."""
    from optuna.trial import TrialState

    left = [t for t in of_run(study.get_trials(deepcopy=False), run_id)
            if t.state == TrialState.RUNNING]
    for t in left:
        fail(study, t.number, reason)
    return len(left)


def set_attr_of_ended(storage, trial_id: int, key: str, value: Any) -> None:
    """A user attribute on a trial, ended or not. Optuna refuses writes to ended trials, yet a
    link recorded late belongs there too (`search sync` restores `mlflow_run_id` of trials that
    ended while MLflow was away): written in Optuna's own table, in one transaction."""
    import json

    import sqlalchemy as sa

    table = sa.Table("trial_user_attributes", sa.MetaData(), autoload_with=storage.engine)
    with storage.engine.begin() as conn:
        conn.execute(table.delete().where(table.c.trial_id == trial_id, table.c.key == key))
        conn.execute(table.insert().values(trial_id=trial_id, key=key,
                                           value_json=json.dumps(value)))
