"""Free settings: names the catalog does not declare, given by the user's own code.

- `model.kwargs.<name>` / `data.kwargs.<name>`: a factory's own keyword arguments;
- `params.<name>`: the parameters of a training function named by `fit:`.

Each is a pseudo-group of the spec language (`FREE`): its options are made per spec from what
is written (`free_option`): a range of integers is an int, any other range a float, choices and
constants any plain value. The names are Python identifiers (they become keyword arguments and
the keys of `config["params"]`), sampled after the catalog's options of their group, by name.
"""
from __future__ import annotations

import re
from typing import Any

from trainers.options import FACTORY, Group, Option

from .errors import SpaceError
from .values import KIND_WORDS, plain
from .yamlio import Locator, Path

KWARGS_OF = ("model", "data")  # groups whose `factory` variant takes keyword arguments
FREE: dict[str, Group] = {
    "model.kwargs": Group("model.kwargs", "keyword arguments of the model factory", {}),
    "data.kwargs": Group("data.kwargs", "keyword arguments of the data factory", {}),
    "params": Group("params", "parameters of the training function named by fit:", {}),
}
SPEC_MARKS = ("low", "high", "choices")  # a mapping with one of these is a spec, not a value
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_free(group: Group) -> bool:
    return group.name in FREE


def looks_like_spec(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in SPEC_MARKS)


def free_option(raw: Any) -> Option:
    """The declaration a free spec implies: a range of integers is an int option, any other
    range a float one; choices and literals take any plain value."""
    if isinstance(raw, dict) and "choices" not in raw and ("low" in raw or "high" in raw):
        ends = [raw[k] for k in ("low", "high", "step") if k in raw]
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in ends)
        return Option("int" if whole else "float", None, "a number of the user's code")
    return Option("any", None, "a value of the user's code", nullable=True)


def check_name(name: Any, path: Path, loc: Locator, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise loc.error(path, f"{what} names must be Python identifiers (letters, digits, _)",
                        name)
    return name


def check_fixed_mapping(values: Any, path: Path, loc: Locator, home: str) -> None:
    """A fixed free mapping (model.kwargs, params) holds plain values, never a spec: a spec
    there would reach the user's code as a dict, in every trial."""
    if not isinstance(values, dict):
        return  # the kind check says so
    for name, value in values.items():
        vpath = path + (str(name),)
        if home == "space.params":
            check_name(name, vpath, loc, "parameter")
        if looks_like_spec(value):
            raise loc.error(vpath, f"a search spec in a fixed mapping would be passed as a "
                            f"constant; move it under {home}.{name} to search it", value)
        if not plain(value):
            raise loc.error(vpath, f"must be {KIND_WORDS['any']}", value)


def check_params(raw: Any, folded: dict[str, tuple[Any, Path]], loc: Locator) -> dict[str, Any]:
    """The top-level `params:` constants, with the literals of `space.params` over them."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise loc.error(("params",), "must be a mapping of parameter names to values (the "
                        "constants of your fit function; search them under space.params)", raw)
    check_fixed_mapping(raw, ("params",), loc, "space.params")
    out = dict(raw)
    for name, (value, path) in folded.items():
        if not plain(value):
            raise loc.error(path, f"must be {KIND_WORDS['any']}", value)
        out[name] = value
    return out


def check_fit(raw: Any, loc: Locator) -> str | None:
    if raw is None:
        return None
    if not FACTORY(raw):
        raise loc.error(("fit",), f"must be {FACTORY.rule} (your training function)", raw)
    return raw


def free_key(key: Any) -> bool:
    """Whether a dotted override names a free setting (`params.lr`, `model.kwargs.width`)."""
    return isinstance(key, str) and (key.startswith("params.") or any(
        key.startswith(f"{g}.kwargs.") for g in KWARGS_OF))


def set_free(config: dict, key: str, value: Any, selected: dict[str, str]) -> None:
    """Apply a dotted override of a free setting to a resolved config (SpaceError if it has no
    home there); string values are read as YAML, as `search train --set` gives them."""
    from .yamlio import load_yaml

    loc = Locator(None)
    if isinstance(value, str) and value.strip():
        try:
            value = load_yaml(f"v: {value}")[0]["v"]
        except SpaceError:
            pass
    head, name = key.rsplit(".", 1)
    check_name(name, (key,), loc, "parameter" if head == "params" else "argument")
    if not plain(value):
        raise loc.error((key,), f"must be {KIND_WORDS['any']}", value)
    if head == "params":
        if "params" not in config:
            raise loc.error((key,), 'params are passed only to your own training function: '
                            'name it with fit: "package.module:function"', show_value=False)
        config["params"][name] = value
        return
    group = head.split(".")[0]
    if selected.get(group) != "factory":
        raise loc.error((key,), f"{group}.kwargs are the arguments of a factory; this config's "
                        f"{group} is {selected.get(group)!r}", show_value=False)
    config[group]["kwargs"][name] = value
