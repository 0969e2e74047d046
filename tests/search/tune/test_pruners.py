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
