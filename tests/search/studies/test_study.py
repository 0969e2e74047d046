from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search.studies import study as studies
from search.errors import UserError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_storage_url_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(studies.ENV_STORAGE, raising=False)
    monkeypatch.chdir(tmp_path)
    default = studies.storage_url(None, "runs/x")
    assert default == f"sqlite:///{tmp_path}/runs/x/study.db"  # absolute
    monkeypatch.setenv(studies.ENV_STORAGE, "postgresql://u@h/db")
    assert studies.storage_url(None, "runs/x").endswith("://u@h/db")
    assert studies.storage_url("sqlite:////a.db", "runs/x") == "sqlite:////a.db"
    with pytest.raises(UserError, match="rel does not exist"):  # never created silently
        studies.storage_url("sqlite:///rel/s.db", "x")
    assert not (tmp_path / "rel").exists()
    (tmp_path / "rel").mkdir()
    assert studies.storage_url("sqlite:///rel/s.db", "x") == f"sqlite:///{tmp_path}/rel/s.db"


def test_continue_new_and_directions(tmp_path):
    storage = studies.open_storage(studies.storage_url(None, tmp_path))
    study = studies.open_study(storage, "s", ["maximize"])
    study.tell(study.ask(), 0.5)
    again = studies.open_study(storage, "s", ["maximize"])
    assert len(again.trials) == 1  # the same study continues
    with pytest.raises(UserError, match=r"exists with directions \['maximize'\].*--new"):
        studies.open_study(storage, "s", ["minimize"])
    fresh = studies.open_study(storage, "s", ["minimize"], new=True)
    assert len(fresh.trials) == 0 and fresh.direction.name == "MINIMIZE"


def test_missing_study_names_what_exists(tmp_path):
    storage = studies.open_storage(studies.storage_url(None, tmp_path))
    studies.open_study(storage, "quickstart", ["maximize"])
    with pytest.raises(UserError, match=r"study 'quickstrat': not found.*quickstart.*did you "
                                        r"mean 'quickstart'"):
        studies.load_study(storage, "quickstrat")


def test_unreachable_database_is_one_clear_line():
    with pytest.raises(UserError) as err:
        studies.open_storage("postgresql://postgres:secret@127.0.0.1:1/none")
    text = str(err.value)
    assert "cannot open the study database" in text and "secret" not in text
    assert "\n" not in text


def test_fail_and_leftovers(tmp_path):
    storage = studies.open_storage(studies.storage_url(None, tmp_path))
    study = studies.open_study(storage, "s", ["maximize"])
    mine = [study.ask() for _ in range(2)]
    other = study.ask()
    for t in mine:
        t.set_user_attr("run_id", "run-a")
    other.set_user_attr("run_id", "run-b")
    studies.fail(study, mine[0].number, "diverged")
    assert studies.fail_leftovers(study, "run-a", "driver gone") == 1
    states = {t.number: (t.state, t.user_attrs.get("fail_reason")) for t in study.trials}
    assert states[mine[0].number] == (TrialState.FAIL, "diverged")
    assert states[mine[1].number] == (TrialState.FAIL, "driver gone")
    assert states[other.number][0] == TrialState.RUNNING  # another run's trial is not touched
    assert studies.counts(study.trials) == {"COMPLETE": 0, "PRUNED": 0, "FAIL": 2,
                                            "RUNNING": 1, "WAITING": 0}


def test_a_study_keeps_its_metric(tmp_path):
    storage = studies.open_storage(studies.storage_url(None, tmp_path))
    study = studies.open_study(storage, "s", ["maximize"])
    studies.name_metrics(study, ["val_accuracy"])
    studies.name_metrics(study, ["val_accuracy"])  # the same again is fine
    with pytest.raises(UserError, match=r"optimise \['val_accuracy'\].*--new"):
        studies.name_metrics(study, ["train_loss"])


class _DiesWhileSampling(optuna.samplers.RandomSampler):
    """Stands for a driver killed while the sampler works on a new trial."""

    def before_trial(self, study, trial):
        raise KeyboardInterrupt


def test_a_trial_belongs_to_its_run_from_the_moment_it_exists(tmp_path):
    storage = studies.open_storage(studies.storage_url(None, tmp_path))
    studies.open_study(storage, "s", ["maximize"])
    study = optuna.load_study(study_name="s", storage=storage, sampler=_DiesWhileSampling())
    with pytest.raises(KeyboardInterrupt):
        studies.ask(study, "run-1")
    (orphan,) = study.get_trials()
    assert orphan.state == TrialState.RUNNING and orphan.user_attrs == {"run_id": "run-1"}
    assert studies.of_run(study.get_trials(), "run-1") == [orphan]  # a resume will settle it

    sampled = optuna.load_study(study_name="s", storage=storage)
    trial = studies.ask(sampled, "run-2")
    assert trial.suggest_float("x", 0, 1) == sampled.trials[-1].params["x"]
    assert sampled.trials[-1].user_attrs == {"run_id": "run-2"} and trial.number == 1


def test_an_enqueued_trial_is_popped_and_labelled(tmp_path):
    storage = studies.open_storage(studies.storage_url(None, tmp_path))
    study = studies.open_study(storage, "s", ["maximize"])
    study.enqueue_trial({"x": 0.25}, user_attrs={"warm": "old#3"})
    trial = studies.ask(study, "run-1")
    assert trial.suggest_float("x", 0, 1) == 0.25 and len(study.trials) == 1
    assert study.trials[0].user_attrs == {"warm": "old#3", "run_id": "run-1"}


def test_best_of_several_objectives_is_the_front_ordered_by_the_first():
    """One definition for every command, MLflow and the stages: the Pareto front ordered by
    the first objective (ties by the next), best = first; never by trial number."""
    from search.stages import best_trial

    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc, size in ((0.60, 100), (0.90, 900), (0.75, 300), (0.70, 400), (0.90, 800)):
        study.tell(study.ask(), [acc, size])  # #3 is dominated by #2; #1 by #4
    front = studies.best_trials(study)
    assert [t.number for t in front] == [4, 2, 0]
    assert best_trial(study.trials, study.directions).number == 4
    one = optuna.create_study(direction="minimize")
    for v in (0.3, 0.1, 0.1):
        one.tell(one.ask(), v)
    assert [t.number for t in studies.best_trials(one)] == [1]  # a tie: the earlier trial
