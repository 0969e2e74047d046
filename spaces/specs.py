"""What one spec of `space:` says: its syntax, kinds and Optuna name.

`split_space` separates literals at the top of a group (fixed values, folded into the fixed
sections) from specs; `parse_spec` reads a spec (range, choices, branches of sub-specs, or
a constant inside a branch) into a SpecNode without yet knowing which variants it applies
to: an option's kind is the same in every variant, its check may not be (tree.py checks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from trainers.catalog import GROUPS
from trainers.options import Group, Option

from .errors import MISSING, Raw, suggest
from .free import KWARGS_OF, check_fixed_mapping, check_name, free_option, is_free, \
    looks_like_spec
from .params import Condition
from .values import KIND_WORDS, coerce_kind, same
from .yamlio import Locator, Path, segment

SPEC_KEYS = ("low", "high", "log", "step", "choices", "when")
RANGE_KEYS = ("low", "high", "log", "step")
NOUN = {"data": "dataset", "model": "model", "optimizer": "optimizer", "scheduler": "scheduler"}


def declaration(group: Group, key: str) -> Option | None:
    """The option `key` of a group as declared by any variant (kinds agree across variants)."""
    if key in group.options:
        return group.options[key]
    return next((extra[key] for extra in group.variants.values() if key in extra), None)


def option_rank(group: Group, key: str) -> int:
    """Catalog order of an option in its group: the canonical order of specs."""
    keys = list(group.options)
    for extra in group.variants.values():
        keys += [k for k in extra if k not in keys]
    return keys.index(key) if key in keys else len(keys)


def split_space(raw: Any, loc: Locator) -> tuple[dict[str, dict[str, tuple[Any, Path]]],
                                                 dict[str, dict[str, Any]]]:
    """(literals to fold into the fixed sections, with their paths; specs), both by group."""
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        raise loc.error(("space",), "must be a mapping of groups (data, model, optimizer, ...)",
                        raw)
    folded: dict[str, dict[str, tuple[Any, Path]]] = {}
    specs: dict[str, dict[str, Any]] = {}
    for gname, entries in raw.items():
        gpath = ("space", segment(gname))
        if gname == "params":
            _split_free("params", entries, gpath, folded, specs, loc)
            continue
        if gname not in GROUPS:
            raise loc.error(gpath, "unknown settings group (one of " + ", ".join(GROUPS) + ")",
                            gname, suggestion=suggest(gname, GROUPS))
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise loc.error(gpath, f"must be a mapping of {gname} options to specs", entries)
        group = GROUPS[gname]
        for key, spec in entries.items():
            opt = declaration(group, key) if isinstance(key, str) else None
            if opt is None:
                raise loc.error(gpath + (segment(key),), f"unknown {gname} option", key,
                                suggestion=suggest(key, group.all_keys()))
            if key == "kwargs" and gname in KWARGS_OF and isinstance(spec, dict):
                _split_free(f"{gname}.kwargs", spec, gpath + ("kwargs",), folded, specs, loc)
            elif isinstance(spec, dict) and opt.kind != "mapping":
                specs.setdefault(gname, {})[key] = spec
            else:
                folded.setdefault(gname, {})[key] = (spec, gpath + (key,))
    return folded, specs


def _split_free(fname: str, entries: Any, path: Path, folded: dict, specs: dict,
                loc: Locator) -> None:
    """A factory's arguments or a fit's params in `space:`: specs are searched, literals are
    constants (folded into the fixed mapping)."""
    if entries is None:
        return
    if not isinstance(entries, dict):
        raise loc.error(path, "must be a mapping of names to specs or values", entries)
    what = "parameter" if fname == "params" else "argument"
    for name, spec in entries.items():
        check_name(name, path + (segment(name),), loc, what)
        if looks_like_spec(spec):
            specs.setdefault(fname, {})[name] = spec
        else:
            folded.setdefault(fname, {})[name] = (spec, path + (name,))


@dataclass(eq=False)
class SpecNode:
    """A spec while it is being checked; becomes a Param."""

    group: Group
    key: str
    path: Path
    name: str
    kind: str
    option: Option
    parent: SpecNode | None = None
    branch: Any = None
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: list[Any] = field(default_factory=list)
    branched: bool = False  # choices written as a mapping of branches
    children: list[list[SpecNode]] = field(default_factory=list)  # per choice
    value: Any = None
    when_raw: Any = MISSING
    when: list[Condition] = field(default_factory=list)
    deps: list[SpecNode] = field(default_factory=list)
    conditions: tuple[Condition, ...] = ()
    allowed: set[str] | None = None

    @property
    def setting(self) -> str:
        return f"{self.group.name}.{self.key}"

    def walk(self):
        yield self
        for kids in self.children:
            for kid in kids:
                yield from kid.walk()


def parse_spec(group: Group, key: Any, raw: Any, path: Path, parent: SpecNode | None,
               branch: Any, variant: str | None, loc: Locator) -> SpecNode:
    gname = group.name
    free = is_free(group)
    if free:
        check_name(key, path, loc, "parameter" if gname == "params" else "argument")
    opt = free_option(raw) if free else declaration(group, key) if isinstance(key, str) \
        else None
    if opt is None:
        raise loc.error(path, f"unknown {gname} option", key,
                        suggestion=suggest(key, group.all_keys()))
    if variant is not None and key not in group.options_for(variant):
        owners = ", ".join(group.variants_with(key))
        raise loc.error(path, f"not an option of {NOUN[gname]} '{variant}' (only of {owners})",
                        key, suggestion=suggest(key, group.options_for(variant)))
    if key == group.selector and parent is not None:
        raise loc.error(path, f"{gname}.{key} picks the {NOUN[gname]}: search it at the top of "
                        f"space.{gname}, not inside a branch", show_value=False)
    name = f"{gname}.{key}" if parent is None else f"{parent.name}.{segment(branch)}.{key}"
    if not isinstance(raw, dict) or opt.kind == "mapping" or (free and not looks_like_spec(raw)):
        if key == "kwargs" and gname in KWARGS_OF:  # a constant inside a branch
            check_fixed_mapping(raw, path, loc, f"space.{gname}.kwargs")
        return SpecNode(group, key, path, name, "constant", opt, parent, branch,
                        value=_coerce(opt, raw, path, loc))
    if not opt.searchable:
        raise loc.error(path, f"{gname}.{key} cannot be searched, only fixed (give a single "
                        "value)", raw)
    for k in raw:
        if k not in SPEC_KEYS:
            raise loc.error(path + (segment(k),), "unknown spec key (a spec is {low, high, "
                            "log, step}, {choices} or a value; any may add when)", k,
                            suggestion=suggest(k, SPEC_KEYS))
    node = SpecNode(group, key, path, name, "categorical", opt, parent, branch,
                    when_raw=raw.get("when", MISSING))
    if "choices" in raw:
        mixed = [k for k in RANGE_KEYS if k in raw]
        if mixed:
            raise loc.error(path + (mixed[0],), "choices cannot be combined with a range",
                            raw[mixed[0]])
        _parse_choices(node, raw["choices"], variant, loc)
    else:
        _parse_range(node, raw, loc)
    return node


def _parse_choices(node: SpecNode, raw: Any, variant: str | None, loc: Locator) -> None:
    path, group, opt = node.path + ("choices",), node.group, node.option
    if not isinstance(raw, (list, dict)):
        raise loc.error(path, "choices must be a list of values or a mapping of branches", raw)
    if not raw:
        raise loc.error(path, "choices must not be empty", raw)
    items = list(raw.items()) if isinstance(raw, dict) else [(v, None) for v in raw]
    selector = node.key == group.selector
    node.branched = isinstance(raw, dict)
    for i, (value, sub) in enumerate(items):
        cpath = path + ((segment(value),) if isinstance(raw, dict) else (f"[{i}]",))
        value = _coerce(opt, value, cpath, loc)
        if selector and value not in group.variants:
            raise loc.error(cpath, f"unknown {NOUN[group.name]} (one of "
                            + ", ".join(group.variants) + ")", value,
                            suggestion=suggest(value, group.variants))
        if any(same(value, c) for c in node.choices):
            raise loc.error(cpath, "duplicate choice", value)
        node.choices.append(value)
        if sub is not None and not isinstance(sub, dict):
            raise loc.error(cpath, f"a branch holds a mapping of {group.name} options to specs",
                            sub)
        scope = value if selector else variant
        keys = sorted(sub or {}, key=lambda k: (option_rank(group, k), k) if isinstance(k, str)
                      else (-1, ""))  # canonical order, as at the top
        node.children.append([parse_spec(group, k, sub[k], cpath + (segment(k),), node,
                                         value, scope, loc) for k in keys])


def _parse_range(node: SpecNode, raw: dict, loc: Locator) -> None:
    path, kind = node.path, node.option.kind
    for k in ("low", "high"):
        if k not in raw:
            raise loc.error(path, f"a range needs both low and high (missing {k}); or use "
                            "choices", show_value=False)
    if kind not in ("float", "int"):
        raise loc.error(path, f"a range needs a number option ({node.setting} is "
                        f"{KIND_WORDS[kind]}); use choices", Raw("low/high"))
    word = KIND_WORDS[kind]
    for k in ("low", "high", "step"):
        if k in raw:
            v = coerce_kind(kind, raw[k])
            if v is MISSING:
                raise loc.error(path + (k,), f"must be {word}", raw[k])
            setattr(node, k, v)
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise loc.error(path + ("log",), "must be true or false", log)
    node.kind, node.log = kind, log
    low, high, step = node.low, node.high, node.step
    if low > high:
        raise loc.error(path + ("low",), "low must not exceed high",
                        Raw(f"low={low!r}, high={high!r}"))
    if log and low <= 0:
        raise loc.error(path + ("low",), "log: true needs low > 0", low)
    if step is not None:
        if log:
            raise loc.error(path + ("step",), "log and step cannot be combined (Optuna "
                            "forbids it)", step)
        if step <= 0:
            raise loc.error(path + ("step",), "step must be > 0", step)
        # compared as the decimals written (0.3 - 0.0 is 3 steps of 0.1), as Optuna does:
        # it would otherwise lower high silently to the last whole step
        span = Decimal(str(high)) - Decimal(str(low))
        if span % Decimal(str(step)) != 0:
            raise loc.error(path + ("step",), f"step must divide high - low = {high - low:g}",
                            step)


def _coerce(opt: Option, value: Any, path: Path, loc: Locator) -> Any:
    """Kind check only; the option's own check runs later, per variant."""
    if value is None:
        if opt.nullable:
            return None
        raise loc.error(path, f"must not be null ({KIND_WORDS[opt.kind]})", value)
    v = coerce_kind(opt.kind, value)
    if v is MISSING:
        raise loc.error(path, f"must be {KIND_WORDS[opt.kind]}", value)
    return v
