"""How the specs of `space:` relate: conditions, sampling order, variants.

1. `when` conditions are resolved to the categorical they name; every spec gets its condition
   (branch ancestry + `when`); the sampling order is a topological order of those dependencies
   (parents and condition targets first, otherwise the catalog's order).
2. One setting may be set by several specs only where they can never apply together.
3. Each spec is checked against the options of every variant of its group it can be active with
   (`optimizer.momentum` searched while `optimizer.name` may be adam is an error).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from trainers.catalog import GROUPS
from trainers.options import Option

from .errors import MISSING, suggest
from .free import FREE, KWARGS_OF
from .params import Condition, Param
from .specs import NOUN, SpecNode, option_rank, parse_spec
from .values import coerce_kind, encode, one_of_values, passes, same
from .yamlio import Locator, dotted, segment

_EXHAUSTIVE_INTS = 10_000  # int ranges up to this size are checked value by value


@dataclass
class ParsedSpace:
    params: list[Param]  # searched parameters and branch constants, in sampling order
    possible: dict[str, set[str]]  # variants each component group can select


def build_params(specs: dict[str, dict[str, Any]], fixed_variant: dict[str, str],
                 loc: Locator) -> ParsedSpace:
    roots: list[SpecNode] = []
    for gname in GROUPS:
        group = GROUPS[gname]
        for key in sorted(specs.get(gname, {}), key=lambda k: option_rank(group, k)):
            roots.append(parse_spec(group, key, specs[gname][key], ("space", gname, key),
                                    None, None, None, loc))
        roots += _free_roots(f"{gname}.kwargs", specs, ("space", gname, "kwargs"), loc)
    roots += _free_roots("params", specs, ("space", "params"), loc)
    nodes = [n for root in roots for n in root.walk()]
    _resolve_when(nodes, loc)
    for root in roots:
        _assign_conditions(root, ())
    order = _topological(nodes, loc)
    _check_overlaps(nodes, loc)
    possible = {}
    for gname, group in GROUPS.items():
        if group.selector:
            sel = next((n for n in roots if n.group is group and n.key == group.selector), None)
            possible[gname] = {fixed_variant[gname]} if sel is None else \
                set(sel.choices) | ({fixed_variant[gname]} if sel.conditions else set())
    by_name = {n.name: n for n in nodes}
    for node in order:
        _check_values(node, possible, by_name, loc)
    return ParsedSpace([_to_param(n, loc) for n in order], possible)


def _free_roots(fname: str, specs: dict[str, dict[str, Any]], path: tuple,
                loc: Locator) -> list[SpecNode]:
    """A factory's arguments after its group's options, a fit's params last; by name."""
    return [parse_spec(FREE[fname], key, specs[fname][key], path + (key,), None, None, None,
                       loc) for key in sorted(specs.get(fname, {}))]


def _check_factory_only(node: SpecNode, possible: dict[str, set[str]],
                        by_name: dict[str, SpecNode], loc: Locator) -> None:
    """A factory argument is searched only where the factory is the one selected."""
    owner = node.group.name.split(".")[0]
    group = GROUPS[owner]
    allowed = set(possible[owner])
    for cond in node.conditions:
        target = by_name[cond.param]
        if target.group is group and target.key == group.selector:
            allowed &= set(cond.values)
    others = sorted(allowed - {"factory"})
    if others:
        raise loc.error(node.path, f"{owner}.kwargs are the arguments of {NOUN[owner]} "
                        f"'factory', but this space can also select {NOUN[owner]} "
                        f"'{others[0]}'; fix {owner}.{group.selector}: factory or add when: "
                        f"{{{owner}.{group.selector}: factory}}", show_value=False)


def _resolve_when(nodes: list[SpecNode], loc: Locator) -> None:
    by_name = {n.name: n for n in nodes}
    categorical = [n for n in nodes if n.kind == "categorical"]
    for node in nodes:
        if node.when_raw is MISSING:
            continue
        wpath = node.path + ("when",)
        if not isinstance(node.when_raw, dict) or not node.when_raw:
            raise loc.error(wpath, 'when maps "group.option" to a value or a list of values',
                            node.when_raw)
        for tkey, tval in node.when_raw.items():
            tpath = wpath + (segment(tkey),)
            target = by_name.get(tkey)
            if target is None:
                same_path = [n for n in categorical if n.setting == tkey]
                if len(same_path) > 1:
                    raise loc.error(tpath, f"{tkey} is searched in several branches: name one "
                                    "(" + ", ".join(n.name for n in same_path) + ")", tkey)
                target = same_path[0] if same_path else None
            if target is None or target.kind != "categorical":
                target = target or next((n for n in nodes if n.setting == tkey), None)
                what = "is not searched with choices" if target else "is not in the space"
                raise loc.error(tpath, f"condition on a branch that does not exist: {tkey} "
                                f"{what}", tkey, suggestion=suggest(
                                    tkey, [n.name for n in categorical]))
            flat_list = target.option.kind in ("floats", "ints") and isinstance(tval, list) \
                and not any(isinstance(x, list) for x in tval)
            wanted = [tval] if not isinstance(tval, list) or flat_list else tval
            if not wanted:
                raise loc.error(tpath, "a condition needs at least one value", tval)
            for v in wanted:
                if not any(same(coerce_kind(target.option.kind, v), c) or same(v, c)
                           for c in target.choices):
                    raise loc.error(tpath, f"condition on a branch that does not exist: "
                                    f"{target.name} has no choice {_quote(v)}", v,
                                    suggestion=suggest(v, [str(c) for c in target.choices]))
            values = tuple(c for c in target.choices if any(
                same(coerce_kind(target.option.kind, v), c) or same(v, c) for v in wanted))
            node.when.append(Condition(target.name, values))
            node.deps.append(target)


def _quote(v: Any) -> str:
    return f"'{v}'" if isinstance(v, str) else segment(v)


def _assign_conditions(node: SpecNode, inherited: tuple[Condition, ...]) -> None:
    node.conditions = inherited + tuple(node.when)
    for choice, kids in zip(node.choices, node.children):
        for kid in kids:
            kid.deps.append(node)
            _assign_conditions(kid, node.conditions + (Condition(node.name, (choice,)),))


def _topological(nodes: list[SpecNode], loc: Locator) -> list[SpecNode]:
    """Parents and `when` targets first; otherwise the canonical (catalog) order."""
    index = {id(n): i for i, n in enumerate(nodes)}
    waiting = {id(n): len({id(d) for d in n.deps}) for n in nodes}
    users: dict[int, list[SpecNode]] = {}
    for n in nodes:
        for d in {id(d): d for d in n.deps}.values():
            users.setdefault(id(d), []).append(n)
    ready = [index[id(n)] for n in nodes if waiting[id(n)] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for user in users.get(id(node), []):
            waiting[id(user)] -= 1
            if waiting[id(user)] == 0:
                heapq.heappush(ready, index[id(user)])
    if len(order) < len(nodes):
        done = {id(n) for n in order}
        node = next(n for n in nodes if id(n) not in done)
        cycle = [node]
        while True:
            node = next(d for d in node.deps if id(d) not in done)
            if node in cycle:
                cycle = cycle[cycle.index(node):] + [node]
                break
            cycle.append(node)
        raise loc.error(cycle[0].path + ("when",), "conditions form a cycle: "
                        + " -> ".join(n.name for n in cycle), show_value=False)
    return order


def _check_overlaps(nodes: list[SpecNode], loc: Locator) -> None:
    """Two specs of one setting must never be active together (e.g. in sibling branches)."""
    seen: dict[str, list[SpecNode]] = {}
    for node in nodes:
        for other in seen.get(node.setting, []):
            if not _exclusive(node.conditions, other.conditions):
                raise loc.error(node.path, f"{node.setting} is also set at "
                                f"{dotted(other.path)} and both can apply at once; put them in "
                                "different branches", show_value=False)
        seen.setdefault(node.setting, []).append(node)


def _exclusive(a: tuple[Condition, ...], b: tuple[Condition, ...]) -> bool:
    return any(ca.param == cb.param and not any(same(x, y) for x in ca.values
                                                for y in cb.values)
               for ca in a for cb in b)


def _check_values(node: SpecNode, possible: dict[str, set[str]], by_name: dict[str, SpecNode],
                  loc: Locator) -> None:
    group = node.group
    if group.name in FREE:
        if group.name.split(".")[0] in KWARGS_OF:
            _check_factory_only(node, possible, by_name, loc)
        options = [node.option]
    elif group.selector is None:
        options = [group.options[node.key]]
    elif node.key == group.selector:
        return  # its values are variant names, checked while parsing
    else:
        allowed = set(possible[group.name])
        for cond in node.conditions:
            target = by_name[cond.param]
            if target.group is group:
                allowed &= set(cond.values) if target.key == group.selector \
                    else (target.allowed or allowed)
        if not allowed:
            raise loc.error(node.path, f"can never apply: its conditions exclude every "
                            f"{NOUN[group.name]} this space can select", show_value=False)
        variants = [v for v in group.variants if v in allowed]
        bad = [v for v in variants if node.key not in group.options_for(v)]
        if bad:
            homes = [v for v in group.variants_with(node.key) if v in possible[group.name]]
            where = " or ".join(f"space.{group.name}.{group.selector}.choices.{v}"
                                for v in homes) or f"a {NOUN[group.name]} that has it"
            raise loc.error(node.path, f"not an option of {NOUN[group.name]} '{bad[0]}', "
                            f"which this space can select; move it under {where}",
                            show_value=False)
        node.allowed = allowed
        options = [group.options_for(v)[node.key] for v in variants]
    for opt in options:
        _check_domain(node, opt, loc)


def _check_domain(node: SpecNode, opt: Option, loc: Locator) -> None:
    rule = f"must be {opt.check.rule}" if opt.check else "must be allowed"
    if node.kind == "constant":
        if not passes(opt, node.value):
            raise loc.error(node.path, rule, node.value)
    elif node.kind == "categorical":
        for i, c in enumerate(node.choices):
            if not passes(opt, c):
                seg = segment(c) if node.branched else f"[{i}]"
                raise loc.error(node.path + ("choices", seg), rule, c,
                                suggestion=suggest(c, one_of_values(opt)))
    else:
        for k in ("low", "high"):
            if not passes(opt, getattr(node, k)):
                raise loc.error(node.path + (k,), rule, getattr(node, k))
        if node.kind == "int" and (node.high - node.low) <= _EXHAUSTIVE_INTS:
            step = node.step or 1
            bad = next((v for v in range(node.low, node.high + 1, step)
                        if not passes(opt, v)), None)
            if bad is not None:
                raise loc.error(node.path, f"every value from low to high {rule} (use choices)",
                                bad)


def _to_param(node: SpecNode, loc: Locator) -> Param:
    if node.kind == "float":
        dist = FloatDistribution(node.low, node.high, log=node.log, step=node.step)
    elif node.kind == "int":
        dist = IntDistribution(node.low, node.high, log=node.log, step=node.step or 1)
    elif node.kind == "categorical":
        dist = CategoricalDistribution([encode(c) for c in node.choices])
    else:
        dist = None
    parent = None if node.parent is None else Condition(node.parent.name, (node.branch,))
    return Param(node.name, node.setting, node.kind, dist, node.conditions, parent,
                 tuple(node.when), tuple(node.choices), node.value, dotted(node.path),
                 loc.line(node.path))
