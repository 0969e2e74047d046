"""The searcher's contract with a real Optuna study (SQLite), driven as Tune drives it."""
from __future__ import annotations

import pickle

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search.studies import study as studies
from search.lifecycle.plan import Objective
from search.tune.searcher import StudySearcher
from search.testing import toy_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
ACC = (Objective("val_accuracy", "maximize"),)


@pytest.fixture
def make(tmp_path):
    url = studies.storage_url(None, tmp_path)

    def build(run_id="run-1", max_trials=10, objectives=ACC, space=None, new=False):
        studies.open_study(studies.open_storage(url), "toy",
                           [o.direction for o in objectives], new=new)
        return StudySearcher(space or toy_space(), storage_url=url, study_name="toy",
                             run_id=run_id, objectives=objectives, max_trials=max_trials,
                             experiment_dir=str(tmp_path / run_id))
    return build


def epoch(e, acc):
    return {"training_iteration": e, "epoch": e, "val_accuracy": acc}


def finished(acc, selected=2, epochs=3):
    return {**epoch(epochs, acc - 0.01), "trial_finished": True, "final_val_accuracy": acc,
            "selected_epoch": selected, "test_accuracy": acc - 0.02, "num_params": 10,
            "epochs_run": epochs}


def test_complete_pruned_and_failed_are_told_as_such(make):
    s = make()
    configs = {tid: s.suggest(tid) for tid in ("a", "b", "c")}
    assert set(configs["a"]) == {"params"} and "optimizer.lr" in configs["a"]["params"]
    for e in (1, 2):
        s.on_trial_result("a", epoch(e, 0.5 + e / 10))
    s.on_trial_complete("a", finished(0.75))
    s.on_trial_result("b", epoch(1, 0.4))
    # a scheduler stops b on its epoch-2 result: Tune skips on_trial_result for that one
    s.on_trial_complete("b", epoch(2, 0.45))
    s.on_trial_complete("c", {**epoch(1, 0.1), "fail_reason": "DivergedError: loss is nan"})
    by_tune = {t.user_attrs["tune_trial_id"]: t for t in s.study.trials}
    a, b, c = by_tune["a"], by_tune["b"], by_tune["c"]
    assert a.state == TrialState.COMPLETE and a.value == 0.75  # the selected epoch's value
    assert a.user_attrs["test_accuracy"] == pytest.approx(0.73) and a.user_attrs["run_id"]
    assert b.state == TrialState.PRUNED and b.intermediate_values == {1: 0.4, 2: 0.45}
    assert b.value == 0.45  # Optuna ranks a pruned trial by its last intermediate value
    assert c.state == TrialState.FAIL and c.user_attrs["fail_reason"].startswith("Diverged")


def test_tpe_sees_pruned_trials_by_their_intermediate_values(make):
    from optuna.samplers._tpe.sampler import _get_pruned_trial_score, _split_trials

    s = make()
    for tid, acc in (("a", 0.9), ("b", 0.8)):
        s.suggest(tid)
        s.on_trial_complete(tid, finished(acc))
    s.suggest("p")
    s.on_trial_result("p", epoch(1, 0.95))  # a high early value, then stopped
    s.on_trial_complete("p", epoch(1, 0.95))
    study = s.study
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert len(pruned) == 1
    assert _get_pruned_trial_score(pruned[0], study) == (-1, -0.95)
    below, above = _split_trials(study, study.trials, n_below=1)
    # the good group is the best *finished* trial, not the stopped one with 0.95 at epoch 1
    assert [t.value for t in below] == [0.9] and pruned[0] in above


def test_errored_trial_fails_with_the_line_the_trainable_left(make, tmp_path):
    s = make()
    s.suggest("x")
    folder = tmp_path / "run-1" / "trial_x"
    folder.mkdir(parents=True)
    (folder / "fail_reason.txt").write_text("RuntimeError: toy failure at epoch 1\n")
    s.on_trial_complete("x", None, error=True)
    t = s.study.trials[0]
    assert t.state == TrialState.FAIL
    assert t.user_attrs["fail_reason"] == "RuntimeError: toy failure at epoch 1"


def test_non_finite_final_value_fails(make):
    s = make()
    s.suggest("n")
    s.on_trial_complete("n", {**finished(0.5), "final_val_accuracy": float("nan")})
    assert s.study.trials[0].state == TrialState.FAIL
    assert "val_accuracy is nan" in s.study.trials[0].user_attrs["fail_reason"]


def test_restore_rebuilds_the_mapping_from_the_study_not_memory(make, tmp_path):
    s = make()
    s.suggest("a")
    s.on_trial_result("a", epoch(1, 0.5))
    s.save(str(tmp_path / "state.pkl"))
    clone = pickle.loads(pickle.dumps(s))  # as Tune stores it: no study, no mapping inside
    assert clone._study is None and clone._numbers == {}
    clone.restore(str(tmp_path / "state.pkl"))
    clone.on_trial_result("a", epoch(1, 0.99))  # a repeated step after a restart is ignored
    clone.on_trial_result("a", epoch(2, 0.6))
    clone.on_trial_complete("a", finished(0.6))
    t = clone.study.trials[0]
    assert t.state == TrialState.COMPLETE and t.intermediate_values == {1: 0.5, 2: 0.6, 3: 0.59}
    assert clone.number_of("a") == 0 and clone.number_of("zz") is None


def test_budget_counts_trials_of_this_run_in_the_study(make):
    s = make(max_trials=2)
    assert s.suggest("a") and s.suggest("b")
    assert s.suggest("c") == Searcher.FINISHED
    other_run = make(run_id="run-2", max_trials=1)
    assert other_run.suggest("d")  # a new run has its own budget on the continued study


def test_orphan_is_adopted_by_the_next_suggestion(make):
    s = make(max_trials=2)
    s.suggest("lost")
    params = dict(s.study.trials[0].params)
    trial = studies.live(s.study, 0)  # what `search resume` does to a trial Tune never saved
    trial.set_user_attr("tune_trial_id", "")
    s._study = None  # reopened, the mapping rebuilt without the orphan
    assert s.suggest("new") == {"params": params}
    assert s.study.trials[0].user_attrs["tune_trial_id"] == "new"
    assert len(s.study.trials) == 1 and s.suggest("next") and len(s.study.trials) == 2


def test_an_orphan_killed_while_sampling_gets_its_params_drawn_when_adopted(make):
    s = make(max_trials=2)
    studies.ask(s.study, "run-1")  # the driver died here, before define-by-run and Tune's id
    trial = studies.live(s.study, 0)
    trial.set_user_attr("tune_trial_id", "")  # what `search resume` does with it
    s._study = None
    config = s.suggest("new")
    assert "optimizer.lr" in config["params"]
    assert config["params"] == s.study.trials[0].params and len(s.study.trials) == 1


def test_a_paused_trial_stopped_without_a_result_ends_on_its_latest(make):
    # HyperBand pauses trials at its milestones (the last epoch included) and later stops the
    # paused ones, which Tune reports with no result at all.
    s = make()
    s.suggest("done"), s.suggest("halved")
    for e in (1, 2):
        s.on_trial_result("done", epoch(e, 0.5 + e / 10))
    s.on_trial_result("done", finished(0.75))
    s.on_trial_result("halved", epoch(1, 0.3))
    s.on_trial_complete("done")
    s.on_trial_complete("halved")
    done, halved = s.study.trials
    assert done.state == TrialState.COMPLETE and done.value == 0.75
    assert done.user_attrs["selected_epoch"] == 2
    assert halved.state == TrialState.PRUNED and halved.user_attrs["stopped_at_epoch"] == 1
    assert pickle.loads(pickle.dumps(s))._last == {} and s._last == {}


def test_grid_finishes_when_exhausted(make):
    space = toy_space(sampler_name="grid", conditional=False)
    s = make(space=space, max_trials=100)
    for i in range(12):
        assert s.suggest(str(i)) != Searcher.FINISHED
        s.on_trial_complete(str(i), finished(0.5 + i / 100))
    assert s.suggest("13") == Searcher.FINISHED


def test_multi_objective_tells_every_value_and_no_intermediate(make):
    objs = (Objective("val_accuracy", "maximize"), Objective("num_params", "minimize"))
    s = make(objectives=objs)
    s.suggest("m")
    s.on_trial_result("m", epoch(1, 0.5))
    s.on_trial_complete("m", {**finished(0.8), "final_num_params": 1234})
    t = s.study.trials[0]
    assert t.values == [0.8, 1234.0] and t.intermediate_values == {}


def test_a_sampled_config_that_breaks_a_rule_is_failed_and_replaced(make, monkeypatch):
    from search.errors import UserError

    picky = toy_space()
    sample = picky.define_by_run

    def breaks_for_sgd(trial):
        config = sample(trial)
        if config["optimizer"]["name"] == "sgd":
            raise UserError("optimizer.nesterov: needs momentum > 0")
        return config

    monkeypatch.setattr(picky, "define_by_run", breaks_for_sgd)
    s = make(space=picky)
    for tid in "abcdef":
        assert s.suggest(tid)["params"]["optimizer.name"] == "adamw"
    failed = [t for t in s.study.trials if t.state == TrialState.FAIL]
    assert failed and all("invalid config" in t.user_attrs["fail_reason"] for t in failed)
    assert len(s._numbers) == 6  # failed draws do not use up the budget

    def always_broken(trial):
        raise UserError("always broken")

    impossible = toy_space()
    monkeypatch.setattr(impossible, "define_by_run", always_broken)
    with pytest.raises(UserError, match="20 sampled configs in a row broke"):
        make(space=impossible, run_id="run-2").suggest("z")


def test_epochs_held_between_reports_are_recorded_each_at_its_step(make):
    """A result carries the epochs since the previous one (held_epochs): the study gets every
    epoch, from the searcher's results and, for a trial told from its files, from `conclude`."""
    from search.tune.searcher import HELD_KEY, conclude

    s = make()
    s.suggest("a"), s.suggest("b")
    s.on_trial_result("a", {**epoch(2, 0.6), HELD_KEY: [epoch(1, 0.5)]})
    s.on_trial_complete("a", {**finished(0.8, selected=3, epochs=4),
                              HELD_KEY: [epoch(3, 0.8)]})
    s.on_trial_result("b", {**epoch(2, 0.3), HELD_KEY: [epoch(1, 0.2)]})
    # b's driver died: its last result is told from the trial's search_result.json
    number = s.number_of("b")
    conclude(s.study, number, ACC, {**finished(0.5, selected=4, epochs=4),
                                    HELD_KEY: [epoch(3, 0.45)]})
    by_tune = {t.user_attrs["tune_trial_id"]: t for t in s.study.trials}
    assert by_tune["a"].intermediate_values == {1: 0.5, 2: 0.6, 3: 0.8, 4: 0.79}
    assert by_tune["a"].state == TrialState.COMPLETE and by_tune["a"].value == 0.8
    assert by_tune["b"].intermediate_values == {1: 0.2, 2: 0.3, 3: 0.45, 4: 0.49}


def _crash(s, tmp_path, tid, reason):
    """A trial that raised an error the trainer does not know (Tune's error path)."""
    folder = tmp_path / "run-1" / f"trial_{tid}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fail_reason.txt").write_text(reason + "\n")
    s.on_trial_complete(tid, None, error=True)


def test_a_run_whose_first_trials_crash_alike_stops_drawing_trials(make, tmp_path):
    s = make(max_trials=20)
    for tid in ("a", "b", "c"):
        assert s.suggest(tid) is not Searcher.FINISHED
    for tid in ("a", "b"):
        _crash(s, tmp_path, tid, "KeyError: 'learning_rate'")
    assert s.suggest("d") is not Searcher.FINISHED and s.gave_up is None  # two are not yet
    _crash(s, tmp_path, "c", "KeyError: 'learning_rate'")
    assert s.suggest("e") is Searcher.FINISHED
    assert s.gave_up == "KeyError: 'learning_rate'"
    _crash(s, tmp_path, "d", "KeyError: 'learning_rate'")  # the one still running ends too
    states = [t.state for t in s.study.trials]
    assert states == [TrialState.FAIL] * 4


@pytest.mark.parametrize("first", ["complete", "other crash"])
def test_crashes_after_a_good_trial_or_of_different_errors_do_not_stop_a_run(make, tmp_path,
                                                                              first):
    s = make(max_trials=20)
    s.suggest("a")
    if first == "complete":
        s.on_trial_complete("a", finished(0.8))
    else:
        _crash(s, tmp_path, "a", "ValueError: bad shape")
    for tid in ("b", "c", "d"):
        s.suggest(tid)
        _crash(s, tmp_path, tid, "KeyError: 'x'")
    assert s.suggest("e") is not Searcher.FINISHED and s.gave_up is None


def test_a_broken_report_contract_counts_as_a_crash(make):
    s = make(max_trials=20)
    reason = "ContractError: report(metrics): the objective val_accuracy is not among ..."
    for tid in ("a", "b", "c"):
        s.suggest(tid)
        s.on_trial_complete(tid, {"training_iteration": 1, "fail_reason": reason,
                                  "code_mistake": True})
    assert s.suggest("d") is Searcher.FINISHED and s.gave_up == reason


def test_known_failures_never_stop_a_run(make):
    """A refused configuration, a diverged loss: they depend on the sampled values."""
    s = make(max_trials=20)
    for tid in ("a", "b", "c", "d"):
        s.suggest(tid)
        s.on_trial_complete(tid, {**epoch(1, 0.1), "fail_reason": "DivergedError: loss is nan"})
    assert s.suggest("e") is not Searcher.FINISHED and s.gave_up is None
