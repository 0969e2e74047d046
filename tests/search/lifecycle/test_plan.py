from __future__ import annotations

import pytest
from ray import tune

from search.errors import UserError
from search.lifecycle.plan import Budget, Resources, concurrency, epochs_cap
from search.testing import toy_space
from spaces import load_space


def test_objectives_accept_one_or_several():
    one = load_space("name: o\nobjective: {metric: val_loss, direction: minimize}\n").objectives
    assert [(o.metric, o.mode) for o in one] == [("val_loss", "min")]
    two = load_space("name: o\nobjective: [{metric: val_accuracy, direction: maximize}, "
                     "{metric: num_params, direction: minimize}]\n").objectives
    assert [o.direction for o in two] == ["maximize", "minimize"]
    assert two[0].better(0.9, 0.8) and two[1].better(10, 20)


def test_bad_objective_is_a_user_error():
    for direction in ("upwards", "max"):  # Tune's word is not the space's
        with pytest.raises(UserError, match=r"objective.direction: must be one of maximize, "
                                            f"minimize, got '{direction}'"):
            load_space(f"name: o\nobjective: {{metric: val_loss, direction: {direction}}}\n")


def test_budget_and_epochs_cap():
    budget = toy_space(trials=7, budget={"max_epochs": 2, "time_limit": 30}).budget
    assert budget == Budget(7, 2, 30.0, None)
    capped = epochs_cap({"train": {"epochs": 5, "seed": 1}}, budget)
    assert capped["train"] == {"epochs": 2, "seed": 1}
    assert epochs_cap({"train": {"epochs": 1}}, budget)["train"]["epochs"] == 1
    with pytest.raises(UserError, match="budget.trials"):
        load_space("name: b\nbudget: {trials: 0}\n")


def test_fractional_gpu_request_is_what_ray_gets_without_a_gpu():
    res = load_space("name: r\nresources: {cpu: 2, gpu: 0.25}\n").resources
    assert res.request() == {"CPU": 2.0, "GPU": 0.25}
    assert res.threads == 2
    trainable = tune.with_resources(lambda config: None, res.request())
    pgf = trainable._resources  # the PlacementGroupFactory Tune schedules each trial with
    assert pgf.required_resources == {"CPU": 2.0, "GPU": 0.25}
    assert pgf.bundles == [{"CPU": 2.0, "GPU": 0.25}]
    # four such trials share one GPU, bounded by CPUs first
    assert concurrency(res, {"CPU": 16, "GPU": 1}) == 4
    assert concurrency(res, {"CPU": 4, "GPU": 1}) == 2


def test_concurrency_fits_the_cluster_and_max_concurrent():
    assert concurrency(Resources(1, 0, None), {"CPU": 2}) == 2
    assert concurrency(Resources(1, 0, 1), {"CPU": 2}) == 1
    assert concurrency(Resources(0.5, 0, None), {"CPU": 2}) == 4
    with pytest.raises(UserError, match="resources.gpu: each trial asks for 0.25 GPUs but"):
        concurrency(Resources(1, 0.25, None), {"CPU": 2})
    with pytest.raises(UserError, match="resources.cpu"):
        concurrency(Resources(4, 0, None), {"CPU": 2})


def test_more_than_one_gpu_per_trial_is_refused():
    for gpu in (1.5, 2):
        with pytest.raises(UserError, match=r"resources.gpu: must be in \[0, 1\] \(a trial trains "
                                            r"on one GPU; a fraction shares one\)"):
            load_space(f"name: r\nresources: {{cpu: 1, gpu: {gpu}}}\n")
