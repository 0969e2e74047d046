"""What `search validate` accepts, the run's builders accept: every sampler x pruner x objective
list x (static or conditional space), through the real `load_space` and the same builders
`search run` calls before Ray starts (search/lifecycle/runner.py: the plan, the sampler, the scheduler)."""
from __future__ import annotations

import itertools

import pytest

from search.errors import UserError
from search.tune.pruners import PRUNERS, build_scheduler, pruner_info, started_at_once
from search.studies.samplers import SAMPLERS, build_sampler
from spaces import SpaceError, capabilities, load_space

STATIC = """
  optimizer:
    lr: {choices: [0.001, 0.01]}
    weight_decay: {low: 0.0, high: 0.01, step: 0.005}
  model:
    width: {low: 8, high: 16, step: 8}
"""
CONDITIONAL = """
  optimizer:
    lr: {choices: [0.001, 0.01]}
    name:
      choices:
        adamw: {}
        sgd:
          momentum: {low: 0.8, high: 0.9, step: 0.1}
"""
OBJECTIVES = {"one": "val_accuracy", "two": "[val_accuracy, num_params]",
              "final_first": "num_params"}


def space_text(sampler: str, pruner: str, objective: str, conditional: bool) -> str:
    return (f"name: caps\nmodel: {{name: mlp}}\ntrain: {{epochs: 3}}\n"
            f"objective: {OBJECTIVES[objective]}\nsampler: {{name: {sampler}}}\n"
            f"pruner: {{name: {pruner}}}\nbudget: {{trials: 4}}\n"
            f"space:{CONDITIONAL if conditional else STATIC}")


def build_like_run(space) -> None:
    """What search run builds from a space before any trial (runner._plan, run_search)."""
    objectives = space.objectives
    max_t = space.budget.max_epochs
    build_scheduler(space, objectives, max_t)
    started_at_once(space, max_t, 2, capped=False)
    if pruner_info(space).uses_searcher:
        build_sampler(space, len(objectives))


CASES = list(itertools.product(sorted(SAMPLERS), sorted(PRUNERS), sorted(OBJECTIVES),
                               (False, True)))


def test_the_registries_name_the_same_entries():
    assert list(SAMPLERS) == list(capabilities.SAMPLERS)
    assert list(PRUNERS) == list(capabilities.PRUNERS)
    for name, info in SAMPLERS.items():
        assert info.caps is capabilities.SAMPLERS[name]
    for name, info in PRUNERS.items():
        assert info.caps is capabilities.PRUNERS[name]


def test_whatever_validate_accepts_the_run_builds():
    accepted, refused = 0, 0
    for sampler, pruner, objective, conditional in CASES:
        text = space_text(sampler, pruner, objective, conditional)
        try:
            space = load_space(text, filename="caps.yaml")
        except SpaceError:
            refused += 1
            continue  # refused at validate: one line, exit 2, nothing left for the run
        accepted += 1
        try:
            build_like_run(space)
        except UserError as err:
            pytest.fail(f"validate accepts, run refuses ({sampler}, {pruner}, {objective}, "
                        f"conditional={conditional}): {err}")
    # both outcomes occur: the matrix exercises the rules, not only one side of them
    assert accepted > 50 and refused > 50


@pytest.mark.parametrize("sampler, pruner, objective, conditional, rule", [
    ("cmaes", "none", "two", False, "objectives need a multi-objective sampler"),
    ("grid", "asha", "one", True, "grid needs a space without conditional"),
    ("tpe", "pbt", "one", False, "cannot be combined with a searcher"),
    ("random", "pbt", "one", True, "pbt needs a space without conditional"),
    ("tpe", "hyperband", "two", False, "hyperband needs a single objective; with 2 "
     "objectives use one of asha, median, none"),
    ("tpe", "asha", "final_first", False, "only known when a trial ends"),
])
def test_what_the_run_refuses_is_refused_at_validate(sampler, pruner, objective, conditional,
                                                     rule):
    with pytest.raises(SpaceError, match=rule):
        load_space(space_text(sampler, pruner, objective, conditional), filename="caps.yaml")


def test_grid_takes_several_objectives_in_both():
    space = load_space(space_text("grid", "none", "two", False), filename="caps.yaml")
    build_like_run(space)


def test_defaults_come_from_the_capability_table():
    space = load_space("name: d\nsampler: {name: cmaes}\npruner: {name: median}\n"
                       "space:" + STATIC)
    assert space.sampler.n_startup_trials == capabilities.SAMPLERS["cmaes"].options[
        "n_startup_trials"]
    assert space.pruner.grace_period == capabilities.PRUNERS["median"].options["grace_period"]
    # the builder reads the value the space resolved
    sampler = build_sampler(load_space("name: g\nsampler: {name: gp}\n"), 1)
    assert sampler._n_startup_trials == capabilities.SAMPLERS["gp"].options["n_startup_trials"]
    # an objective known only at the end leaves nothing to prune on: pruner none by default
    assert load_space("name: f\nobjective: num_params\n").pruner.name == "none"


def test_pbt_needs_a_parameter_it_may_change_in_both():
    text = ("name: p\npruner: {name: pbt}\nspace:\n  model:\n    width: {choices: [8, 16]}\n")
    with pytest.raises(SpaceError, match="pbt needs a searched parameter it can change"):
        load_space(text)
    build_like_run(load_space(text.replace("model:\n    width", "optimizer:\n    lr")
                              .replace("[8, 16]", "[0.01, 0.1]")))
