"""Cross-field rules on a resolved config, and the load-time probe that applies them to every
config a space can produce.

Policy (docs/spaces.md): a space is rejected when ANY config it can produce breaks a rule, with
the values that break it, so every sampled config is valid. The probe walks every combination
of the categoricals that matter to the rules (and the branch constants) and both ends of every
searched number the rules read; every rule is monotone in its numbers, so the ends decide.
A space whose combinations exceed PROBE_LIMIT is not probed; its configs are still checked when
they are sampled (a SpaceError at sampling time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from trainers.catalog import IMAGE_SIZES, MODEL_INPUTS, OFFICIAL_TEST

from .errors import Raw, SpaceError
from .params import Param
from .settings import Fixed, resolve
from .values import word
from .yamlio import Locator

PROBE_LIMIT = 20_000


# (the rule in words, the values that break it[, the setting to point at if not Rule.path])
Broken = tuple


@dataclass(frozen=True)
class Rule:
    path: str  # the setting an error points at
    reads: tuple[str, ...]  # settings the rule looks at (what the probe varies)
    check: Callable[[dict], Broken | None]


def image_size(cfg: dict) -> int | None:
    data = cfg["data"]
    if data.get("resize"):
        return data["resize"]
    if data["dataset"] == "image_folder":
        return data["image_size"]
    return IMAGE_SIZES.get(data["dataset"])  # a factory's is unknown: not checked


def _nesterov(cfg: dict) -> Broken | None:
    o = cfg["optimizer"]
    if o["name"] == "sgd" and o["nesterov"] and (o["momentum"] <= 0 or o["dampening"] != 0):
        return ("sgd nesterov needs momentum > 0 and dampening 0",
                f"momentum={o['momentum']:g}, dampening={o['dampening']:g}")
    return None


def _fractions(cfg: dict) -> Broken | None:
    # null takes the trainer's defaults (0.1, 0.2); a dataset's own test split takes no fraction
    d = cfg["data"]
    val, test = d["val_fraction"], d["test_fraction"]
    if d["dataset"] in OFFICIAL_TEST:
        if test not in (None, 0):
            return (f"{d['dataset']} has an official test split, which is its test split: "
                    "leave test_fraction out (or 0)", f"test_fraction={test:g}")
        return None
    if test == 0 and d["dataset"] != "factory":  # a factory may return its own test part
        return (f"{d['dataset']} has no test split of its own: test_fraction must be > 0",
                "test_fraction=0")
    val, test = 0.1 if val is None else val, 0.2 if test is None else test
    if val + test >= 1:
        return ("val_fraction + test_fraction must be < 1", f"{val:g} + {test:g}")
    return None


def _batch_schedule(cfg: dict) -> Broken | None:
    d = cfg["data"]
    top, every = d["batch_size_max"], d["batch_size_double_every"]
    if (top is None) != (every is None):
        return ("batch_size_max and batch_size_double_every go together (give both or "
                "neither)", f"batch_size_max={top}, batch_size_double_every={every}",
                "data.batch_size_max" if every is None else "data.batch_size_double_every")
    if top is not None and top < d["batch_size"]:
        return ("batch_size_max must be >= batch_size",
                f"batch_size_max={top}, batch_size={d['batch_size']}")
    return None


def _warmup(cfg: dict) -> Broken | None:
    warm, epochs = cfg["scheduler"]["warmup_epochs"], cfg["train"]["epochs"]
    if warm and warm >= epochs:
        return ("warmup_epochs must be smaller than train.epochs",
                f"warmup_epochs={warm}, epochs={epochs}")
    return None


def _swa(cfg: dict) -> Broken | None:
    t = cfg["train"]
    if t["swa_start"] is not None and t["swa_start"] > t["epochs"]:
        return ("swa_start must not exceed train.epochs",
                f"swa_start={t['swa_start']}, epochs={t['epochs']}")
    return None


def _padding(cfg: dict) -> Broken | None:
    # Mirrors trainers.models.build_cnn: blocks halve the map (ceil) when they downsample, and
    # reflect padding needs pad < map size, circular pad <= map size (torch fails otherwise).
    m, size = cfg["model"], image_size(cfg)
    if m["name"] != "cnn" or m["padding_mode"] not in ("reflect", "circular") or not size:
        return None
    pad = m["dilation"] * (m["kernel_size"] - 1) // 2
    smallest = size
    for _ in range(m["depth"]):
        smallest = min(smallest, size)
        halved = (size + 1) // 2
        if m["downsample"] == "stride" and m["convs_per_block"] > 1:
            smallest = min(smallest, halved)
        size = halved if m["downsample"] != "none" else size
    if pad > smallest or (m["padding_mode"] == "reflect" and pad == smallest):
        return (f"cnn {m['padding_mode']} padding of {pad} px needs larger feature maps than "
                f"the {smallest} px the last block works on; use zeros or replicate, fewer "
                "blocks, a smaller kernel_size or dilation",
                f"depth={m['depth']}, padding_mode={m['padding_mode']}")
    return None


def _cutout(cfg: dict) -> Broken | None:
    a, size = cfg["augment"], image_size(cfg)
    if a["cutout"] > 0 and size and a["cutout_size"] > size:
        return ("cutout_size must not exceed the image size",
                f"cutout_size={a['cutout_size']}, image size {size}")
    return None


def _model_input(cfg: dict) -> Broken | None:
    # every dataset but a factory holds images (a factory's data are checked on the driver)
    name, dataset = cfg["model"]["name"], cfg["data"]["dataset"]
    if dataset != "factory" and "image" not in MODEL_INPUTS.get(name, ("image",)):
        return (f"{name} takes {' or '.join(MODEL_INPUTS[name])} data, but {dataset} holds "
                "images", f"model.name={name}, data.dataset={dataset}")
    return None


def _kfold(cfg: dict) -> Broken | None:
    if cfg["data"]["kfold"] == 1:
        return "kfold must be 0 (off) or at least 2", "kfold=1"
    return None


_IMAGE = ("data.dataset", "data.resize", "data.image_size")
RULES = (
    Rule("optimizer.nesterov", ("optimizer.name", "optimizer.nesterov", "optimizer.momentum",
                                "optimizer.dampening"), _nesterov),
    Rule("data.test_fraction", ("data.dataset", "data.val_fraction", "data.test_fraction"),
         _fractions),
    Rule("data.batch_size_max", ("data.batch_size", "data.batch_size_max",
                                 "data.batch_size_double_every"), _batch_schedule),
    Rule("scheduler.warmup_epochs", ("scheduler.warmup_epochs", "train.epochs"), _warmup),
    Rule("train.swa_start", ("train.swa_start", "train.epochs"), _swa),
    Rule("model.padding_mode", ("model.name", "model.padding_mode", "model.dilation",
                                "model.kernel_size", "model.depth", "model.downsample",
                                "model.convs_per_block") + _IMAGE, _padding),
    Rule("augment.cutout_size", ("augment.cutout", "augment.cutout_size") + _IMAGE, _cutout),
    Rule("model.name", ("model.name", "data.dataset"), _model_input),
    Rule("data.kfold", ("data.kfold",), _kfold),
)
_READS = {path for rule in RULES for path in rule.reads}


def broken(config: dict) -> tuple[Rule, Broken] | None:
    for rule in RULES:
        found = rule.check(config)
        if found:
            return rule, found
    return None


def _where(rule: Rule, found: Broken) -> tuple[str, ...]:
    return tuple((found[2] if len(found) > 2 else rule.path).split("."))


def check_config(config: dict, loc: Locator, where: str = "") -> dict:
    """Raise SpaceError when a (sampled or overridden) config breaks a rule."""
    found = broken(config)
    if found:
        rule, why = found
        raise loc.error(_where(rule, why), why[0] + where, Raw(why[1]))
    return config


class _TooMany(Exception):
    pass


def probe(params: list[Param], fixed: Fixed, loc: Locator) -> bool:
    """Check every config the space can produce (see the module doc). False when the space
    has too many combinations to probe."""
    need = {p.name for p in params if p.path in _READS}
    by_name = {p.name: p for p in params}
    todo = list(need)
    while todo:  # the parameters their conditions depend on matter too
        for cond in by_name[todo.pop()].condition:
            if cond.param not in need:
                need.add(cond.param)
                todo.append(cond.param)
    seq = [p for p in params if p.name in need]
    leaves = [0]

    def walk(i: int, sampled: dict[str, Any], values: dict[str, Any]) -> None:
        if i == len(seq):
            leaves[0] += 1
            if leaves[0] > PROBE_LIMIT:
                raise _TooMany
            _leaf(resolve(fixed, values), sampled, seq, loc)
            return
        p = seq[i]
        if not p.active(sampled):
            walk(i + 1, sampled, values)
            return
        if p.kind == "constant":
            options = [p.value]
        elif p.kind == "categorical":
            options = list(p.choices)
        else:
            d = p.distribution
            options = [d.low, d.high] if d.low != d.high else [d.low]
        for v in options:
            walk(i + 1, {**sampled, p.name: v}, {**values, p.path: v})

    try:
        walk(0, {}, {})
    except _TooMany:
        return False
    return True


def _leaf(config: dict, sampled: dict[str, Any], seq: list[Param], loc: Locator) -> None:
    found = broken(config)
    if not found:
        return
    rule, why = found
    text, values = why[:2]
    involved = [p for p in seq if p.name in sampled and p.path in rule.reads]
    if not involved:
        raise loc.error(_where(rule, why), text, Raw(values))
    where = ", ".join(f"{p.name}={word(sampled[p.name])}" for p in involved)
    raise SpaceError(f"{text}; the space can produce such configs ({where})",
                     path=involved[-1].spec_path, value=Raw(values), file=loc.file,
                     line=involved[-1].line)
