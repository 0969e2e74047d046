"""The search-side sections: objective, budget, sampler, pruner, resources, tracking, stages.

Each is a table of trainers.options.Option; a Section with a `selector` (sampler.name,
pruner.name, a stage's mode) lists in `applies` the selector values an option is valid for.
Giving an option that does not apply is an error; the resolved section holds the options that
apply, with defaults filled.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from trainers.options import NONNEG, NONNEG_INT, POS_INT, POSITIVE, Check, Option, interval, one_of

from . import capabilities as caps
from .errors import Raw, SpaceError, suggest
from .settings import augment_overrides, data_overrides, model_settings
from .values import check_literal
from .yamlio import Locator, Path, segment

O = Option
MAX_TRIALS = 100_000  # a budget beyond it is a typo (1e23), not a search anyone will wait for
MAX_SEEDS = 100  # trainings of one config; more is a typo, not a budget


@dataclass(frozen=True)
class Section:
    name: str
    options: dict[str, Option]
    selector: str | None = None
    applies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    parsers: dict[str, Callable[[Any], Any]] = field(default_factory=dict)  # before the check
    # selector value -> the defaults of its own options (spaces/capabilities.py), which win
    # over the options' table defaults
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)


METRICS = {name: m.direction for name, m in caps.METRICS.items()}  # natural directions
OBJECTIVE = Section("objective", {
    "metric": O("str", "val_accuracy", "what the search optimises", one_of(*caps.METRICS)),
    "direction": O("str", None, "null = the metric's natural direction",
                   one_of(*caps.DIRECTIONS), nullable=True),
})

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")


def parse_duration(value: Any) -> Any:
    """"90s", "30m", "2h", "1h30m" → seconds; numbers pass through; other text is left for
    the check to reject."""
    if not isinstance(value, str):
        return value
    parts = _DURATION.findall(value)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s", "", value):
        return value
    return float(sum(float(n) * _UNITS[u] for n, u in parts))


BUDGET = Section("budget", {
    "trials": O("int", 20, f"number of trials (at most {MAX_TRIALS:,})",
                interval(1, MAX_TRIALS)),
    "max_epochs": O("int", None, "caps the epochs of every trial; the pruning max; null = "
                    "train.epochs (its largest searched value)", POS_INT, nullable=True),
    "time_limit": O("float", None, 'wall-clock limit in seconds, or "90s", "30m", "2h"; null = '
                    "none", Check("> 0 seconds or a duration such as \"30m\"",
                                  POSITIVE), nullable=True),
    "target": O("float", None, "stop when the first objective reaches this value",
                nullable=True),
    "seeds": O("int", 1, "trainings of every config, each with its own seed, at once (Ray "
               "tasks of the trial's resources each); the objective is their mean",
               interval(1, MAX_SEEDS)),
    "seed_penalty": O("float", 0.0, "c of the objective mean - c*std over the seeds (toward "
                      "worse: mean + c*std when minimising); needs seeds > 1", NONNEG),
}, parsers={"time_limit": parse_duration})

SAMPLERS = tuple(caps.SAMPLERS)  # the names, in the registry's order
SAMPLER = Section("sampler", {
    "name": O("str", "tpe", "Optuna sampler", one_of(*caps.SAMPLERS)),
    "seed": O("int", None, "sampler seed; null = the master seed", NONNEG_INT, nullable=True),
    "n_startup_trials": O("int", None, "random trials before the model takes over",
                          NONNEG_INT),
    "multivariate": O("bool", None, "multivariate TPE"),
    "group": O("bool", None, "TPE groups parameters that appear together (conditionals)"),
    "constant_liar": O("bool", None, "TPE avoids running trials' points (parallel trials)"),
    "qmc_type": O("str", None, "quasi-random sequence", one_of("sobol", "halton")),
}, selector="name", applies=caps.options_of(caps.SAMPLERS),
    defaults={name: dict(c.options) for name, c in caps.SAMPLERS.items()})

PRUNERS = tuple(caps.PRUNERS)
PRUNER = Section("pruner", {
    "name": O("str", "asha", "early stopping of weak trials (a Ray Tune scheduler)",
              one_of(*caps.PRUNERS)),
    "grace_period": O("int", None, "epochs every trial runs before it may be stopped", POS_INT),
    "reduction_factor": O("int", None, "keep 1/reduction_factor of the trials at each rung",
                          interval(2)),
    "brackets": O("int", None, "ASHA brackets", POS_INT),
    "perturbation_interval": O("int", None, "PBT: epochs between exploit/explore steps",
                               POS_INT),
    "quantile_fraction": O("float", None, "PBT: fraction of trials replaced/copied",
                           interval(0.0, 0.5, low_open=True)),
}, selector="name", applies=caps.options_of(caps.PRUNERS),
    defaults={name: dict(c.options) for name, c in caps.PRUNERS.items()})

# A trial trains on one GPU: no data parallelism inside a trial (search/README.md, "GPUs").
GPU = Check("in [0, 1] (a trial trains on one GPU; a fraction shares one)",
            lambda v: 0 <= v <= 1)
RESOURCES = Section("resources", {
    "cpu": O("float", 1.0, "CPUs per trial", POSITIVE),
    "gpu": O("float", 0.0, "GPUs per trial: 1, or a fraction to share one", GPU),
    "max_concurrent": O("int", None, "trials at once; null = as many as fit", POS_INT,
                        nullable=True),
})

TRACKING = Section("tracking", {
    "enabled": O("bool", True, "record runs in MLflow"),
    "uri": O("str", None, "MLflow tracking URI; null = MLflow's default", nullable=True),
    "experiment": O("str", None, "MLflow experiment; null = the space's name", nullable=True),
    "keep_checkpoints": O("int", 3, "finished trials of a search that keep their checkpoint, in "
                          "MLflow and on disk once it ends: the k best (with several "
                          "objectives also the Pareto front); pruned and failed keep none",
                          NONNEG_INT),
    "register_as": O("str", None, "registered model name; null = the space's name",
                     nullable=True),
})

_ENABLED = {"enabled": O("bool", True, "run this stage")}
STAGES = {
    "finetune": Section("finetune", {
        "mode": O("str", "full", "full: train every layer; transfer: freeze the backbone",
                  one_of("full", "transfer")),
        "lr_scale": O("float", 0.1, "lr = best lr * lr_scale", interval(0.0, 1.0,
                      low_open=True)),
        "epochs": O("int", 3, "epochs of fine-tuning", POS_INT),
        "freeze": O("int", None, "leading modules frozen; null = the whole backbone",
                    NONNEG_INT, nullable=True),
        "knn": O("int", 0, "k of a kNN head on frozen features; 0 = off", NONNEG_INT),
        "data": O("mapping", None, "data settings that differ for fine-tuning", nullable=True),
        **_ENABLED,
    }, selector="mode", applies={"freeze": ("transfer",)}),
    "distill": Section("distill", {
        "student": O("mapping", {"name": "cnn", "width": 8, "hidden": 32, "dropout": 0.0},
                     "the student's model settings"),
        "alpha": O("float", 0.5, "loss = (1-alpha)*CE(labels) + alpha*distance(student, "
                   "teacher logits)", interval(0.0, 1.0)),
        "temperature": O("float", 4.0, "softmax temperature of both logits", POSITIVE),
        "distance": O("str", "kl", "distance between logits", one_of("kl", "mse",
                      "wasserstein")),
        "epochs": O("int", 10, "epochs of distillation", POS_INT),
        "lr_scale": O("float", 1.0, "lr = best lr * lr_scale", POSITIVE),
        "trials": O("int", 0, "a small search over alpha, temperature, lr; 0 = off",
                    NONNEG_INT),
        "seed": O("int", None, "seed of the student's weights and batches; null = the "
                  "trained config's train.seed", NONNEG_INT, nullable=True),
        "augment": O("mapping", None, "augment settings that differ for the student, e.g. "
                     "{mixup: 0.4}: the teacher labels the mixed images", nullable=True),
        **_ENABLED,
    }),
    "quantize": Section("quantize", {
        "mode": O("str", "int8_static", "float16, int8 dynamic (Linear only) or int8 static",
                  one_of("float16", "int8_dynamic", "int8_static")),
        "calibration_batches": O("int", 16, "batches that calibrate static scales", POS_INT),
        "backend": O("str", "x86", "quantized engine", one_of("x86", "fbgemm", "qnnpack",
                     "onednn")),
        **_ENABLED,
    }, selector="mode", applies={"calibration_batches": ("int8_static",),
                                 "backend": ("int8_dynamic", "int8_static")}),
}


def check_section(sec: Section, raw: Any, path: Path, loc: Locator,
                  defaults: dict[str, Any] | None = None, skip: tuple[str, ...] = ()) -> dict:
    """Validate one section; `defaults` overrides table defaults, `skip` names keys the
    caller handles."""
    defaults = defaults or {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise loc.error(path, f"{sec.name} must be a mapping", raw)
    for key in raw:
        if key not in sec.options and key not in skip:
            raise loc.error(path + (segment(key),), f"unknown {sec.name} option (one of "
                            + ", ".join(sec.options) + ")", key,
                            suggestion=suggest(key, sec.options))
    out: dict[str, Any] = {}
    chosen = None
    if sec.selector:
        chosen = _value(sec, sec.selector, raw, path, loc, defaults)
        out[sec.selector] = chosen
    for key in sec.options:
        if key == sec.selector:
            continue
        if chosen is not None and chosen not in sec.applies.get(key, (chosen,)):
            if key in raw:
                only = ", ".join(sec.applies[key])
                raise loc.error(path + (key,), f"does not apply to {sec.name} "
                                f"{sec.selector} {chosen} (only to {only})", raw[key])
            continue
        out[key] = _value(sec, key, raw, path, loc, defaults, chosen)
    return out


def _value(sec: Section, key: str, raw: dict, path: Path, loc: Locator,
           defaults: dict[str, Any], chosen: Any = None) -> Any:
    if key not in raw:
        own = sec.defaults.get(chosen, {}) if isinstance(chosen, str) else {}
        return defaults.get(key, own.get(key, sec.options[key].default))
    value, opt = raw[key], sec.options[key]
    if key in sec.parsers:
        value = sec.parsers[key](value)
        if isinstance(value, str) and opt.kind != "str":
            raise loc.error(path + (key,), f"must be {opt.check.rule}", value)
    return check_literal(opt, value, loc, path + (key,))


def check_objective(raw: Any, loc: Locator) -> list[dict]:
    """One objective or a list (multi-objective); shorthand `objective: val_loss`."""
    if raw is None:
        raw = {}
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise loc.error(("objective",), "needs at least one metric", raw)
    out = []
    for i, item in enumerate(items):
        path = ("objective", f"[{i}]") if isinstance(raw, list) else ("objective",)
        if isinstance(item, str):
            item = {"metric": item}
            path = path + ("metric",)
        obj = check_section(OBJECTIVE, item, path, loc)
        obj["direction"] = obj["direction"] or METRICS[obj["metric"]]
        if any(o["metric"] == obj["metric"] for o in out):
            raise loc.error(path, "each metric may appear once", obj["metric"])
        out.append(obj)
    return out


def check_stages(raw: Any, loc: Locator) -> list[dict]:
    """`stages:` a list of {stage: name, ...options}; a distillation student is a model
    section, finetune data a mapping of data settings that change."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise loc.error(("stages",), "must be a list of {stage: finetune|distill|quantize, ...}",
                        raw)
    out = []
    for i, item in enumerate(raw):
        path = ("stages", f"[{i}]")
        if not isinstance(item, dict):
            raise loc.error(path, "a stage is a mapping with a `stage:` key", item)
        name = item.get("stage")
        if name not in STAGES:
            raise loc.error(path + ("stage",), "unknown stage (one of " + ", ".join(STAGES)
                            + ")", Raw("nothing") if name is None else name,
                            suggestion=suggest(name, STAGES))
        stage = {"stage": name, **check_section(STAGES[name], item, path, loc,
                                                skip=("stage",))}
        if "student" in stage:
            stage["student"] = model_settings(stage["student"], path + ("student",), loc)
        if stage.get("data") is not None:
            stage["data"] = data_overrides(stage["data"], path + ("data",), loc)
        if stage.get("augment") is not None:
            stage["augment"] = augment_overrides(stage["augment"], path + ("augment",), loc)
        out.append(stage)
    return out


def check_combination(objective: list[dict], sampler: dict, pruner: dict, budget: dict,
                      raw: dict, params: list, loc: Locator) -> None:
    """Rules across sections: what the sampler and pruner can combine with, read from their
    entries in spaces/capabilities.py (the run's builders read the same entries)."""
    n = len(objective)
    sampler_caps, pruner_caps = caps.SAMPLERS[sampler["name"]], caps.PRUNERS[pruner["name"]]
    sampler_given = isinstance(raw.get("sampler"), dict) and "name" in raw["sampler"]
    conditional = next((p for p in params if p.condition), None)
    if n > 1 and not sampler_caps.multi_objective:
        able = [s for s, c in caps.SAMPLERS.items() if c.multi_objective]
        raise loc.error(("sampler", "name"), f"{n} objectives need a multi-objective sampler ("
                        + ", ".join(able) + ")", sampler["name"])
    if not pruner_caps.uses_searcher:
        if sampler_given and sampler["name"] != caps.SEARCHERLESS_SAMPLER:
            raise loc.error(("sampler", "name"), f"pruner {pruner['name']} cannot be combined "
                            f"with a searcher (Ray Tune): use sampler name "
                            f"{caps.SEARCHERLESS_SAMPLER} or leave it out", sampler["name"])
    if pruner_caps.mutates:  # a population trained together
        resources = raw.get("resources") if isinstance(raw.get("resources"), dict) else {}
        cap = resources.get("max_concurrent")
        if isinstance(cap, int) and cap < budget["trials"]:
            raise loc.error(("resources", "max_concurrent"), f"{pruner['name']} trains its whole "
                            f"population (budget.trials = {budget['trials']}) together, members "
                            "beyond the free CPUs waiting paused; a smaller cap would split it "
                            "into populations that never meet: leave it out or lower "
                            "budget.trials", cap)
    if n > 1 and not pruner_caps.multi_objective:
        able = [p for p, c in caps.PRUNERS.items() if c.multi_objective]
        raise loc.error(("pruner", "name"), f"{pruner['name']} needs a single objective; with "
                        f"{n} objectives use one of " + ", ".join(able), pruner["name"])
    metrics = [o["metric"] for o in objective]
    if pruner_caps.watches_metric and not caps.pruned_on(metrics):
        which = "the first objective" if n == 1 else "the objectives"
        raise loc.error(("pruner", "name"), f"{pruner['name']} compares trials epoch by epoch "
                        f"on {which}, but {', '.join(metrics)} "
                        f"{'is' if n == 1 else 'are'} only known when a trial ends; "
                        "add an epoch metric or use pruner name none", pruner["name"])
    for which, entry in (("sampler", sampler_caps), ("pruner", pruner_caps)):
        if conditional is not None and not entry.conditionals:
            raise SpaceError(f"{which} {entry.name} needs a space without conditional "
                             "parameters", path=conditional.spec_path,
                             value=Raw("a conditional parameter"), file=loc.file,
                             line=conditional.line)
    if pruner_caps.mutates and params and not any(caps.mutable(p.path) for p in params):
        raise loc.error(("pruner", "name"), f"{pruner['name']} needs a searched parameter it "
                        "can change mid-training (an optimizer, regularization or augment "
                        "setting); model and data settings cannot change under a running "
                        "checkpoint", pruner["name"])
    if sampler_caps.finite:
        for p in params:
            if p.kind == "float" and p.distribution.step is None:
                raise SpaceError(f"the {sampler['name']} sampler needs a step on every "
                                 "searched float", path=p.spec_path, value=Raw("no step"),
                                 file=loc.file, line=p.line)
    _check_seeds(budget, pruner, loc)
    for key in ("grace_period", "perturbation_interval"):
        if key in pruner and pruner[key] > budget["max_epochs"]:
            raise loc.error(("pruner", key), f"must not exceed budget.max_epochs "
                            f"({budget['max_epochs']})", pruner[key])


def _check_seeds(budget: dict, pruner: dict, loc: Locator) -> None:
    """budget.seed_penalty only with several seeds (an option with no effect is an error); a
    population that copies members' checkpoints (PBT) trains one model per member."""
    if budget["seed_penalty"] and budget["seeds"] == 1:
        raise loc.error(("budget", "seed_penalty"), "has no effect with budget.seeds 1: "
                        "set seeds > 1 or leave it out", budget["seed_penalty"])
    if budget["seeds"] > 1 and caps.PRUNERS[pruner["name"]].mutates:
        raise loc.error(("budget", "seeds"), f"pruner {pruner['name']} copies one member's "
                        "model into another and cannot train several seeds per member: use "
                        "seeds 1 or another pruner", budget["seeds"])
