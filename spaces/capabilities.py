"""What each sampler, pruner and objective metric can do: the one source of these facts.

Plain declarative data (no Optuna, no Ray, no torch), read by the space validator
(spaces/sections.py), which fills each entry's defaults into the space's typed sampler and
pruner sections (spaces/section_types.py), and by the run's builders (search/studies/samplers.py,
search/tune/pruners.py) alike, so that what `search validate` accepts `search run` accepts. Adding a
sampler or pruner: an entry here (its options with their defaults and what it can combine with),
a field for each new option in spaces/sections.py and spaces/section_types.py, then its build
function in search/studies/samplers.py or search/tune/pruners.py (a test checks both tables have the same
names).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping


def _frozen(options: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(options))


@dataclass(frozen=True)
class SamplerCaps:
    name: str
    doc: str
    options: Mapping[str, Any] = field(default_factory=dict)  # its own options → default
    multi_objective: bool = True  # can it rank several objectives?
    conditionals: bool = True     # can it sample a space with conditional parameters?
    finite: bool = False          # does it need a finite domain (a step on every float)?


@dataclass(frozen=True)
class PrunerCaps:
    name: str
    doc: str
    options: Mapping[str, Any] = field(default_factory=dict)  # its own options → default
    uses_searcher: bool = True    # False: Tune refuses a search algorithm beside it (PBT)
    watches_metric: bool = True   # compares trials epoch by epoch on the objective(s)
    multi_objective: bool = False  # can it run with several objectives (Pareto ranks)?
    conditionals: bool = True     # can it run a space with conditional parameters?
    mutates: bool = False         # changes parameters mid-training: needs one that may change


_TPE = {"n_startup_trials": 8, "multivariate": True, "group": True, "constant_liar": True}
SAMPLERS: Mapping[str, SamplerCaps] = MappingProxyType({s.name: s for s in (
    SamplerCaps("tpe", "Tree-structured Parzen Estimator (default); multivariate, grouped for "
                "conditional spaces, constant liar for parallel trials", _frozen(_TPE)),
    SamplerCaps("gp", "Gaussian-process Bayesian optimisation",
                _frozen({"n_startup_trials": 8})),
    SamplerCaps("cmaes", "CMA-ES on float/int parameters; categoricals are sampled "
                "independently (at random)", _frozen({"n_startup_trials": 8}),
                multi_objective=False),
    SamplerCaps("random", "independent uniform sampling"),
    SamplerCaps("grid", "every combination of finite domains", conditionals=False,
                finite=True),
    SamplerCaps("qmc", "quasi-Monte Carlo (Sobol or Halton) low-discrepancy points",
                _frozen({"qmc_type": "sobol"})),
    SamplerCaps("nsga2", "NSGA-II genetic algorithm for several objectives"),
)})

PRUNERS: Mapping[str, PrunerCaps] = MappingProxyType({p.name: p for p in (
    PrunerCaps("asha", "asynchronous successive halving: stop the worst trials at "
               "grace_period * reduction_factor^k epochs (several objectives: by Pareto rank)",
               _frozen({"grace_period": 1, "reduction_factor": 3, "brackets": 1}),
               multi_objective=True),
    # HyperBand has no grace period: its brackets' first milestones follow from max_t and eta
    PrunerCaps("hyperband", "synchronous HyperBand brackets (pauses trials)",
               _frozen({"reduction_factor": 3})),
    PrunerCaps("median", "stop a trial below the median of the others at the same epoch, "
               "after grace_period epochs (several objectives: in the worse half by Pareto "
               "rank)", _frozen({"grace_period": 1}), multi_objective=True),
    PrunerCaps("none", "run every trial to its last epoch", watches_metric=False,
               multi_objective=True),
    PrunerCaps("pbt", "population-based training: exploit the best trials' checkpoints and "
               "perturb their parameters every perturbation_interval epochs",
               _frozen({"perturbation_interval": 2, "quantile_fraction": 0.25}),
               uses_searcher=False, conditionals=False, mutates=True),
)})

# A member of a mutating pruner (pbt) continues from another member's checkpoint: parameters that
# shape the model or the data, or choose the optimiser/schedule class, would not fit it.
FROZEN_GROUPS = ("model", "data")
FROZEN_SETTINGS = ("optimizer.name", "scheduler.name", "train.epochs")


def mutable(path: str) -> bool:
    """Whether the setting `group.option` may change in the middle of training."""
    return path.split(".", 1)[0] not in FROZEN_GROUPS and path not in FROZEN_SETTINGS


# The sampler beside a pruner that cannot share the run with a searcher (pbt samples its
# population up front, at random).
SEARCHERLESS_SAMPLER = "random"

DIRECTIONS = ("maximize", "minimize")  # Optuna's words; Tune's are "max"/"min"


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str   # its natural direction
    per_epoch: bool  # reported after every epoch (a pruner can compare trials on it)


# Metrics a space may name as its objective.
METRICS: Mapping[str, Metric] = MappingProxyType({m.name: m for m in (
    Metric("val_accuracy", "maximize", True),
    Metric("val_loss", "minimize", True),
    Metric("train_loss", "minimize", True),
    Metric("num_params", "minimize", False),
    Metric("latency_ms", "minimize", False),
    Metric("epoch_time", "minimize", True),
)})

# What trainers.fit reports after every epoch; the rest exist only once a trial ends, so a
# pruner cannot compare trials on them.
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "lr", "grad_norm", "epoch_time",
                 "samples_per_sec")
FINAL_METRICS = ("test_accuracy", "num_params", "best_val_accuracy", "latency_ms")


def options_of(table: Mapping[str, SamplerCaps] | Mapping[str, PrunerCaps]) -> dict[str, tuple]:
    """Option → the entries it applies to (the `applies` table of a section)."""
    out: dict[str, list[str]] = {}
    for name, caps in table.items():
        for option in caps.options:
            out.setdefault(option, []).append(name)
    return {option: tuple(names) for option, names in out.items()}


def pruned_on(metrics: list[str]) -> bool:
    """Whether a pruner has something to compare epoch by epoch: one objective reported every
    epoch, or with several objectives at least one such (the others count at a rung when the
    epoch's result carries them: num_params does, latency_ms does not; search/tune/pareto_pruners.py)."""
    if len(metrics) == 1:
        return metrics[0] in EPOCH_METRICS
    return any(m in EPOCH_METRICS for m in metrics)


def default_pruner(metrics: list[str]) -> str:
    """asha for one objective reported every epoch, else none. With several objectives asha
    and median rank trials by Pareto dominance when named, but are not the default: the
    quickstart measurement that would justify it (issue 17, target 1) is still missing, and
    on the benchmark matrix's lc_mo (bench/bench_matrix.py, 20 seeds, same epochs) no pruning
    kept the better fronts (BENCHMARKS.md, "Pruning with several objectives")."""
    if len(metrics) > 1 or metrics[0] not in EPOCH_METRICS:
        return "none"
    return "asha"
