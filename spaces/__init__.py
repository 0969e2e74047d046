"""The search-space language: one YAML file declares the fixed settings, what is searched
(ranges, choices, branches with their own parameters, conditions) and how (objective, budget,
sampler, pruner, resources, tracking, post-search stages). See docs/spaces.md.

    space = load_space("spaces/quickstart.yaml")
    config = space.define_by_run(optuna_trial)   # the full resolved settings tree
"""
from __future__ import annotations

from .errors import SpaceError
from .params import Condition, Param
from .space import Space, load_space, shipped

__all__ = ["Condition", "Param", "Space", "SpaceError", "load_space", "shipped"]
