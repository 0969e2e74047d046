"""A Space written out: as YAML that loads back to an equal Space, and as the readable tree
that `search validate` prints."""
from __future__ import annotations

from typing import Any, Protocol

from trainers.catalog import GROUPS

from .params import Param
from .values import key, word
from .yamlio import dump_yaml



class Space(Protocol):
    """What writing a space out reads (spaces.space.Space has it; this module sits below it)."""

    name: str
    description: str
    seed: int
    source: Any
    fixed_values: dict
    all_params: tuple[Param, ...]
    params: list[Param]
    objectives: tuple

    def sections(self) -> dict[str, Any]: ...


def _children(space: Space) -> dict[str, dict[Any, list[Param]]]:
    """parent name → branch value (by key()) → the params and constants written there."""
    out: dict[str, dict[Any, list[Param]]] = {}
    for p in space.all_params:
        if p.parent is not None:
            out.setdefault(p.parent.param, {}).setdefault(key(p.parent.values[0]), []).append(p)
    return out


def _spec(p: Param, kids: dict[str, dict[Any, list[Param]]]) -> Any:
    if p.kind == "constant":
        return p.value
    if p.kind == "categorical":
        branches = kids.get(p.name, {})
        if branches:
            choices: Any = {c: {k.path.rsplit(".", 1)[1]: _spec(k, kids) for k in branches.get(key(c), [])}
                            for c in p.choices}
        else:
            choices = list(p.choices)
        spec: dict[str, Any] = {"choices": choices}
    else:
        d = p.distribution
        spec = {"low": d.low, "high": d.high}
        if d.log:
            spec["log"] = True
        if d.step is not None and not (p.kind == "int" and d.step == 1):
            spec["step"] = d.step
    if p.when:
        spec["when"] = {c.param: list(c.values) for c in p.when}
    return spec


def space_to_yaml(space: Space) -> str:
    doc: dict[str, Any] = {"name": space.name}
    if space.description:
        doc["description"] = space.description
    doc["seed"] = space.seed
    if space.fit:
        doc["fit"] = space.fit
    fixed = space.fixed_values
    for gname in GROUPS:
        if fixed.get(gname):
            doc[gname] = fixed[gname]
    if fixed.get("params"):
        doc["params"] = fixed["params"]
    kids = _children(space)
    tree: dict[str, dict[str, Any]] = {}
    for p in space.all_params:
        if p.parent is None:
            where = tree.setdefault(p.group, {})
            option = p.option
            if option.startswith("kwargs."):  # a factory's argument: space.<group>.kwargs.<name>
                where, option = where.setdefault("kwargs", {}), option[len("kwargs."):]
            where[option] = _spec(p, kids)
    if tree:
        doc["space"] = tree
    doc.update(space.sections())
    return dump_yaml(doc, flow_leaves=True)


def branch_count(space: Space) -> int:
    """Branches that carry parameters, plus parameters with their own `when`."""
    kids = _children(space)
    return sum(len(b) for b in kids.values()) + sum(1 for p in space.all_params if p.when)


def describe(space: Space) -> str:
    where = f"  ({space.source})" if space.source else ""
    lines = [f"{space.name}{where}"]
    if space.description:
        lines.append(f"  {space.description.strip().splitlines()[0]}")
    lines.append(f"  seed: {space.seed}")
    if space.fit:
        lines.append(f"  fit: {space.fit}")
    fixed = []
    for g, opts in space.fixed_values.items():
        for k, v in opts.items():
            if (g == "params" or k == "kwargs") and isinstance(v, dict):  # one line per name
                prefix = g if g == "params" else f"{g}.{k}"
                fixed += [(f"{prefix}.{name}", x) for name, x in v.items()]
            else:
                fixed.append((f"{g}.{k}", v))
    if fixed:
        lines.append("  fixed (differs from the defaults):")
        lines += [f"    {path}: {word(v)}" for path, v in fixed]
    kids = _children(space)
    roots = [p for p in space.all_params if p.parent is None]
    if roots:
        lines.append("  searched:")
        for p in roots:
            _describe_param(p, kids, 4, lines)
    s = space
    objectives = ", ".join(f"{o.direction} {o.metric}" for o in s.objectives)
    lines.append(f"  objective: {objectives}")
    lines.append("  budget: " + _pairs(s.budget.as_dict()))
    for name in ("sampler", "pruner"):
        section = s.sections()[name]
        rest = {k: v for k, v in section.items() if k != "name"}
        lines.append(f"  {name}: {section['name']}" + (f" ({_pairs(rest)})" if rest else ""))
    lines.append("  resources: " + _pairs(s.resources.as_dict()))
    lines.append("  tracking: " + _pairs(s.tracking.as_dict()))
    for stage in s.sections()["stages"]:
        rest = {k: v for k, v in stage.items() if k not in ("stage", "student", "data")}
        lines.append(f"  stage {stage['stage']}: {_pairs(rest)}")
    lines.append(f"{len(s.params)} searched parameters, {branch_count(s)} conditional branches")
    return "\n".join(lines)


def _describe_param(p: Param, kids: dict, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    when = ""
    if p.when:
        when = "  when " + " and ".join(
            f"{c.param} in ({', '.join(word(v) for v in c.values)})" for c in p.when)
    name = p.name if p.kind != "constant" else p.path
    lines.append(f"{pad}{name}: {p.domain()}{when}")
    for choice in p.choices:
        branch = kids.get(p.name, {}).get(key(choice), [])
        if branch:
            lines.append(f"{pad}  if {word(choice)}:")
            for kid in branch:
                _describe_param(kid, kids, indent + 4, lines)


def _pairs(d: dict) -> str:
    return ", ".join(f"{k} {word(v)}" for k, v in d.items())
