from __future__ import annotations

import pytest
from ray.tune import schedulers

from search.errors import UserError
from search.lifecycle.plan import Objective
from search.tune.pruners import (PRUNERS, build_scheduler, holding_note, mutations_of, pruner_info,
                            started_at_once)
from search.testing import toy_space

ACC = Objective("val_accuracy", "maximize")
KINDS = {"asha": schedulers.AsyncHyperBandScheduler, "hyperband": schedulers.HyperBandScheduler,
         "median": schedulers.MedianStoppingRule, "none": schedulers.FIFOScheduler,
         "pbt": schedulers.PopulationBasedTraining}


def test_registry_matches_the_spaces_language():
    from spaces.sections import PRUNERS as LANGUAGE

    assert set(PRUNERS) == set(LANGUAGE) == set(KINDS)


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_every_pruner_builds_its_scheduler_in_epochs(name):
    space = toy_space(pruner_name=name, conditional=name != "pbt")
    sched = build_scheduler(space, ACC, max_t=8)
    assert isinstance(sched, KINDS[name])
    if PRUNERS[name].watches_metric:
        assert sched._time_attr == "training_iteration"  # epochs, never seconds
        assert (sched._metric, sched._mode) == ("val_accuracy", "max")


def test_trials_report_only_where_the_scheduler_can_decide():
    """ASHA decides at its rungs (of every bracket), FIFO never; any other scheduler may decide
    at any epoch."""
    from search.tune.pruners import decision_epochs

    space = toy_space(pruner_name="asha",
                      pruner={"grace_period": 2, "reduction_factor": 3, "brackets": 2})
    assert decision_epochs(build_scheduler(space, ACC, max_t=9), 9) == (2, 6)
    asha = toy_space(pruner_name="asha", epochs=20,
                     pruner={"grace_period": 5, "reduction_factor": 3})
    assert decision_epochs(build_scheduler(asha, ACC, max_t=20), 20) == (5, 15)
    assert decision_epochs(build_scheduler(toy_space(), ACC, max_t=20), 20) == ()
    for name in ("median", "hyperband"):
        sched = build_scheduler(toy_space(pruner_name=name), ACC, max_t=20)
        assert decision_epochs(sched, 20) is None


def test_asha_takes_its_settings_from_the_space():
    space = toy_space(pruner_name="asha",
                      pruner={"grace_period": 2, "reduction_factor": 3, "brackets": 2})
    sched = build_scheduler(space, ACC, max_t=9)
    assert sched._max_t == 9 and sched._reduction_factor == 3.0 and len(sched._brackets) == 2
    assert [m for m, _ in sched._brackets[0]._rungs] == [6, 2]  # grace 2, x3 below max_t 9


@pytest.mark.parametrize("max_t,rf", [(4, 2), (9, 3), (12, 3), (27, 3), (30, 4), (1, 3)])
def test_hyperband_starts_as_many_trials_as_its_first_bracket_holds(max_t, rf):
    space = toy_space(pruner_name="hyperband", pruner={"reduction_factor": rf})
    sched = build_scheduler(space, ACC, max_t=max_t)
    first = sched._get_n0(sched._s_max_1 - 1)  # Tune's own size of the first bracket
    assert started_at_once(space, max_t, 2, capped=False) == max(2, first)
    assert started_at_once(space, max_t, 64, capped=False) == max(64, first)
    # the user's max_concurrent is also Tune's cap on running trials: kept, and said
    assert started_at_once(space, max_t, 2, capped=True) == 2
    note = holding_note(space, max_t, 2)
    assert (note is None) == (first <= 2)
    if note:
        assert f"up to {first} trials" in note and "use asha" in note


def test_other_pruners_start_as_many_trials_as_run():
    for name in ("asha", "median", "none"):
        space = toy_space(pruner_name=name)
        assert started_at_once(space, 9, 2, capped=False) == 2
        assert holding_note(space, 9, 2) is None


def test_median_grace_period_counts_epochs():
    sched = build_scheduler(toy_space(pruner_name="median", pruner={"grace_period": 3}), ACC, 8)
    assert sched._grace_period == 3.0 and sched._time_attr == "training_iteration"


def test_pbt_mutates_the_spaces_parameters():
    space = toy_space(pruner_name="pbt", conditional=False)
    muts = mutations_of(space)
    # the optimiser class and the model's width would not fit a running checkpoint
    assert set(muts) == {"optimizer.lr"}
    assert 1e-4 <= muts["optimizer.lr"].sample() <= 1.0
    assert not pruner_info(space).uses_searcher


def test_pbt_refuses_conditional_spaces():
    with pytest.raises(UserError, match="pbt needs a space without conditional"):
        build_scheduler(toy_space(pruner_name="pbt", conditional=True), ACC, 4)


def test_pruning_on_a_metric_known_only_at_the_end_is_refused():
    with pytest.raises(UserError, match="'num_params' is only known when a trial ends"):
        build_scheduler(toy_space(pruner_name="asha"), Objective("num_params", "minimize"), 4)
    assert build_scheduler(toy_space(pruner_name="none"), Objective("num_params", "minimize"), 4)


def test_unknown_pruner():
    with pytest.raises(UserError, match="pruner.name: must be one of " + ", ".join(PRUNERS)
                       + ", got 'sha'"):  # where the space is read, before any builder
        toy_space(pruner_name="sha")


def test_pbt_needs_a_parameter_it_may_change(monkeypatch):
    space = toy_space(pruner_name="pbt", conditional=False)
    width = space.distributions()["model.width"]
    monkeypatch.setattr(space, "distributions", lambda: {"model.width": width})
    with pytest.raises(UserError, match="pbt needs a searched parameter it can change"):
        mutations_of(space)

# -- several objectives: Pareto ranks at the rungs (search/tune/pareto_pruners.py) -----------------
TWO = (ACC, Objective("num_params", "minimize"))


def trials(*ids):
    from ray.tune.experiment import Trial

    return [Trial("search_trial", trial_id=i, stub=True) for i in ids]


def epoch(t, acc, params=None, **more):
    out = {"training_iteration": t, "val_accuracy": acc, **more}
    if params is not None:
        out["num_params"] = params
    return out


def test_asha_and_median_take_several_objectives_the_others_refuse():
    from search.tune.pareto_pruners import ParetoASHA, ParetoMedian

    space = toy_space(pruner_name="asha", pruner={"grace_period": 1, "reduction_factor": 3})
    sched = build_scheduler(space, TWO, max_t=9)
    assert isinstance(sched, ParetoASHA) and sched.brackets == [[1, 3]]  # rungs below max_t
    assert isinstance(build_scheduler(toy_space(pruner_name="median"), TWO, 9), ParetoMedian)
    assert isinstance(build_scheduler(toy_space(pruner_name="none"), TWO, 9),
                      schedulers.FIFOScheduler)
    with pytest.raises(UserError, match="hyperband needs a single objective, the space has 2; "
                                        "use one of asha, median, none"):
        build_scheduler(toy_space(pruner_name="hyperband"), TWO, 9)
    with pytest.raises(UserError, match="only known when a trial ends"):
        build_scheduler(space, (Objective("num_params", "minimize"),
                                Objective("latency_ms", "minimize")), 9)


def test_pareto_asha_keeps_the_front_of_each_rung():
    space = toy_space(pruner_name="asha", pruner={"grace_period": 1, "reduction_factor": 2})
    sched = build_scheduler(space, TWO, max_t=4)
    a, b, c, d = trials("a", "b", "c", "d")
    for t in (a, b, c, d):
        sched.on_trial_add(None, t)
    go, stop = schedulers.TrialScheduler.CONTINUE, schedulers.TrialScheduler.STOP
    assert sched.on_trial_result(None, a, epoch(1, 0.50, 1000)) == go  # first at the rung
    assert sched.on_trial_result(None, b, epoch(1, 0.40, 2000)) == stop  # dominated by a
    # less accurate but far smaller: an end of the front (a tie with a goes to the newcomer)
    assert sched.on_trial_result(None, c, epoch(1, 0.48, 10)) == go
    assert sched.on_trial_result(None, a, epoch(2, 0.60, 1000)) == go  # rung 2: first again
    assert sched.on_trial_result(None, d, epoch(1, 0.30, 5000)) == stop
    # one decision per rung: later epochs between rungs go on
    assert sched.on_trial_result(None, c, epoch(1, 0.48, 10)) == go
    assert sched.on_trial_result(None, a, epoch(3, 0.61, 1000)) == go


def test_only_the_objectives_a_result_carries_count():
    """latency_ms is measured when a trial ends: at a rung the points are compared on the
    objectives they all carry; num_params alone (constant in training) decides nothing."""
    lat = (ACC, Objective("latency_ms", "minimize"))
    sched = build_scheduler(toy_space(pruner_name="asha", pruner={"reduction_factor": 2}), lat, 4)
    a, b = trials("a", "b")
    sched.on_trial_add(None, a)
    sched.on_trial_add(None, b)
    sched.on_trial_result(None, a, epoch(1, 0.5))
    assert sched.on_trial_result(None, b, epoch(1, 0.4, latency_ms=0.1)) == "STOP"

    sched = build_scheduler(toy_space(pruner_name="asha", pruner={"reduction_factor": 2}), TWO, 4)
    a, b = trials("a", "b")
    sched.on_trial_add(None, a)
    sched.on_trial_add(None, b)
    sched.on_trial_result(None, a, {"training_iteration": 1, "num_params": 10})
    assert sched.on_trial_result(None, b, {"training_iteration": 1, "num_params": 99}) == \
        "CONTINUE"


def test_pareto_median_stops_the_worse_half_once_enough_trials_reported():
    sched = build_scheduler(toy_space(pruner_name="median", pruner={"grace_period": 2}), TWO, 9)
    a, b, c, d, e = trials("a", "b", "c", "d", "e")
    for t, acc in ((a, 0.9), (b, 0.8), (c, 0.7)):
        assert sched.on_trial_result(None, t, epoch(1, acc - 0.5, 1000)) == "CONTINUE"  # grace
        assert sched.on_trial_result(None, t, epoch(2, acc, 1000)) == "CONTINUE"  # < 3 others
    assert sched.on_trial_result(None, d, epoch(2, 0.6, 1000)) == "STOP"  # worse than all
    assert sched.on_trial_result(None, e, epoch(2, 0.6, 100)) == "CONTINUE"  # smallest: front
