from __future__ import annotations

import optuna
import pytest

from search.errors import UserError
from search.studies.samplers import SAMPLERS, build_sampler, derive_seed
from search.testing import quality, toy_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
STATIC_ONLY = {"grid", "cmaes"}  # a grid needs a fixed set of parameters; keep cmaes simple


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_drives_define_by_run(name):
    if name == "cmaes":
        pytest.importorskip("cmaes", reason="CmaEsSampler needs the cmaes package")
    startup = {"n_startup_trials": 2} if "n_startup_trials" in SAMPLERS[name].caps.options \
        else {}
    space = toy_space(sampler_name=name, conditional=name not in STATIC_ONLY, sampler=startup)
    sampler = build_sampler(space, n_objectives=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(5):
        trial = study.ask()
        config = space.define_by_run(trial)
        assert set(trial.params) >= {"optimizer.lr", "optimizer.name", "model.width"}
        study.tell(trial, quality(config))
    assert len(study.trials) == 5 and all(t.state.name == "COMPLETE" for t in study.trials)


@pytest.mark.parametrize("name", sorted(n for n, s in SAMPLERS.items() if s.multi_objective))
def test_multi_objective_samplers_rank_two_objectives(name):
    space = toy_space(sampler_name=name, conditional=name != "grid")
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=build_sampler(space, n_objectives=2))
    for _ in range(4):
        trial = study.ask()
        config = space.define_by_run(trial)
        study.tell(trial, [quality(config), config["model"]["width"]])
    assert study.best_trials


@pytest.mark.parametrize("name", sorted(n for n, s in SAMPLERS.items() if not s.multi_objective))
def test_single_objective_samplers_refuse_two(name):
    with pytest.raises(UserError, match="handles one objective"):
        build_sampler(toy_space(sampler_name=name, conditional=False), n_objectives=2)


def test_unknown_sampler_lists_the_known_ones():
    with pytest.raises(UserError, match="sampler.name: must be one of " + ", ".join(SAMPLERS)
                       + ", got 'bayes'"):  # where the space is read, before any builder
        toy_space(sampler_name="bayes")


def test_grid_refuses_conditional_spaces_and_walks_the_grid():
    with pytest.raises(UserError, match="grid needs a space without conditional"):
        build_sampler(toy_space(sampler_name="grid", conditional=True), 1)
    space = toy_space(sampler_name="grid", conditional=False)
    sampler = build_sampler(space, 1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(12):  # 3 lrs x 2 optimisers x 2 widths
        trial = study.ask()
        study.tell(trial, quality(space.define_by_run(trial)))
    assert sampler.is_exhausted(study)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 12


def test_tpe_groups_only_conditional_spaces():
    assert build_sampler(toy_space(conditional=True), 1)._group is True
    assert build_sampler(toy_space(conditional=False), 1)._group is False


def test_seed_depends_on_the_trials_already_in_the_study():
    assert derive_seed(0, 0) == derive_seed(0, 0) != derive_seed(0, 6)
    assert derive_seed(None, 3) is None
    first = [build_sampler(toy_space(sampler_name="random"), 1, n) for n in (0, 0, 6)]
    draws = []
    for sampler in first:
        study = optuna.create_study(sampler=sampler)
        trial = study.ask()
        toy_space().define_by_run(trial)
        draws.append(trial.params["optimizer.lr"])
    assert draws[0] == draws[1] != draws[2]
