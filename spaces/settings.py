"""The fixed settings sections (data, model, ...) and the resolution of a config.

A config is `defaults(selected variants) ← fixed sections ← sampled values`, keeping only the
options of each selected variant. Fixed values of variant-specific options are kept while the
space can select a variant they belong to, and apply only when it is selected.
Also the standalone sections the stages take: a student's model, a fine-tuning data change.
"""
from __future__ import annotations

import copy
from typing import Any

from trainers.catalog import GROUPS, defaults
from trainers.options import Group

from .errors import SpaceError, suggest
from .free import KWARGS_OF, check_fixed_mapping
from .specs import NOUN, declaration
from .values import check_literal, same
from .yamlio import Locator, Path

Fixed = dict[str, dict[str, Any]]  # group -> option -> value, as written (defaults dropped)


def section(doc: dict, gname: str, loc: Locator) -> dict:
    raw = doc.get(gname)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise loc.error((gname,), f"must be a mapping of {gname} options to values", raw)
    return raw


def entries(doc: dict, folded: dict[str, dict[str, tuple[Any, Path]]], gname: str,
            loc: Locator) -> dict[str, tuple[Any, Path]]:
    """The fixed values of a group with their paths; literals from `space:` override them
    (a factory's literal arguments in `space.<group>.kwargs` join the fixed ones)."""
    out = {k: (v, (gname, str(k))) for k, v in section(doc, gname, loc).items()}
    out.update(folded.get(gname, {}))
    literals = folded.get(f"{gname}.kwargs")
    if literals:
        base, path = out.get("kwargs", ({}, next(iter(literals.values()))[1][:-1]))
        if isinstance(base, dict):
            base = {**base, **{k: v for k, (v, _) in literals.items()}}
        out["kwargs"] = (base, path)
    return out


def check_variant(group: Group, value: Any, path: Path, loc: Locator) -> str:
    if not isinstance(value, str) or value not in group.variants:
        raise loc.error(path, f"unknown {NOUN[group.name]} (one of "
                        + ", ".join(group.variants) + ")", value,
                        suggestion=suggest(value, group.variants))
    return value


def fixed_variants(doc: dict, folded: dict, loc: Locator) -> dict[str, str]:
    """The variant each component group selects when its selector is not searched."""
    out = {}
    for gname, group in GROUPS.items():
        if group.selector:
            given = entries(doc, folded, gname, loc).get(group.selector)
            out[gname] = group.options[group.selector].default if given is None \
                else check_variant(group, given[0], given[1], loc)
    return out


def check_fixed(doc: dict, folded: dict, possible: dict[str, set[str]], loc: Locator) -> Fixed:
    """Validate the fixed sections; values equal to their default are dropped (canonical)."""
    fixed: Fixed = {}
    for gname, group in GROUPS.items():
        out: dict[str, Any] = {}
        for key, (value, path) in entries(doc, folded, gname, loc).items():
            opt = declaration(group, key) if isinstance(key, str) else None
            if opt is None:
                raise loc.error(path, f"unknown {gname} option", key,
                                suggestion=suggest(key, group.all_keys()))
            if key == group.selector:
                value = check_variant(group, value, path, loc)
                if value != opt.default:
                    out[key] = value
                continue
            options = [opt]
            if group.selector:
                homes = [v for v in group.variants_with(key) if v in possible[gname]]
                if not homes:
                    can = ", ".join(sorted(possible[gname]))
                    raise loc.error(path, f"{gname}.{key} is not an option of the "
                                    f"{NOUN[gname]} this space can select ({can}); only of "
                                    + ", ".join(group.variants_with(key)), show_value=False)
                options = [group.options_for(v)[key] for v in homes]
            value = _first_valid(options, value, path, loc)
            if key == "kwargs" and gname in KWARGS_OF:
                check_fixed_mapping(value, path, loc, f"space.{gname}.kwargs")
            if not all(same(o.default, value) for o in options):
                out[key] = value
        fixed[gname] = out
    return fixed


def _first_valid(options: list, value: Any, path: Path, loc: Locator) -> Any:
    """A fixed value must suit at least one variant it can apply to."""
    first: SpaceError | None = None
    for opt in options:
        try:
            return check_literal(opt, value, loc, path)
        except SpaceError as err:
            first = first or err
    raise first


def check_required(fixed: Fixed, possible: dict[str, set[str]], params: list,
                   loc: Locator) -> None:
    """Required options (image_folder's root, a factory) of every variant that can apply."""
    for gname, group in GROUPS.items():
        if not group.selector:
            continue
        for variant in [v for v in group.variants if v in possible[gname]]:
            for key, opt in group.variants[variant].items():
                if not opt.required or key in fixed[gname]:
                    continue
                in_branch = any(p.kind == "constant" and p.path == f"{gname}.{key}"
                                and p.parent is not None
                                and p.parent.param == f"{gname}.{group.selector}"
                                and p.parent.values == (variant,) for p in params)
                if not in_branch:
                    anchor = (gname,) if (gname,) in loc.lines else ("space", gname)
                    raise SpaceError(f"required for {NOUN[gname]} '{variant}' ({opt.doc})",
                                     path=f"{gname}.{key}", file=loc.file,
                                     line=loc.line(anchor))


def resolve(fixed: Fixed, values: dict[str, Any]) -> dict[str, dict]:
    """The full config: defaults of the selected variants ← fixed ← sampled `values` (by
    setting path). Fixed values of options the selected variant lacks are left out."""
    selected = {}
    for gname, group in GROUPS.items():
        if group.selector:
            path = f"{gname}.{group.selector}"
            selected[gname] = values.get(path, fixed[gname].get(
                group.selector, group.options[group.selector].default))
    config = defaults(selected)
    if "params" in fixed:  # a fit function's own parameters (spaces/free.py)
        config["params"] = copy.deepcopy(fixed["params"])
    for gname, opts in fixed.items():
        for key, value in opts.items():
            if gname in config and key in config[gname]:
                config[gname][key] = copy.deepcopy(value)
    for path, value in values.items():
        gname, key = path.split(".", 1)
        if gname == "params":
            config.setdefault("params", {})[key] = copy.deepcopy(value)
            continue
        if key.startswith("kwargs."):  # a factory's argument: its variant is selected
            config[gname]["kwargs"][key[len("kwargs."):]] = copy.deepcopy(value)
            continue
        if key not in config[gname]:  # the loader's variant analysis rules this out
            raise RuntimeError(f"{path} is not an option of {gname} {selected.get(gname)}")
        config[gname][key] = copy.deepcopy(value)
    return config


def parse_override(key: Any, value: Any) -> tuple[str, str, Any]:
    """`("optimizer.lr", "0.01")` → ("optimizer", "lr", 0.01); strings are read as YAML for
    options that are not strings (`search train --set optimizer.betas=[0.9,0.99]`)."""
    from .yamlio import load_yaml

    loc = Locator(None)
    gname, _, name = str(key).partition(".")
    if gname not in GROUPS:
        raise loc.error((str(key),), "unknown settings group (one of " + ", ".join(GROUPS)
                        + ")", gname, suggestion=suggest(gname, GROUPS))
    opt = declaration(GROUPS[gname], name)
    if opt is None:
        raise loc.error((str(key),), f"unknown {gname} option", name,
                        suggestion=suggest(name, GROUPS[gname].all_keys()))
    if isinstance(value, str):
        if opt.kind != "str":
            try:
                value = load_yaml(f"v: {value}")[0]["v"] if value.strip() else value
            except SpaceError:
                pass
        elif opt.nullable and value == "null":
            value = None
    return gname, name, value


def check_override(group: Group, key: str, value: Any, variant: str | None) -> Any:
    loc = Locator(None)
    path = (f"{group.name}.{key}",)
    if key == group.selector:
        return check_variant(group, value, path, loc)
    options = group.options_for(variant)
    if key not in options:
        raise loc.error(path, f"not an option of {NOUN[group.name]} '{variant}' (only of "
                        + ", ".join(group.variants_with(key)) + ")", key,
                        suggestion=suggest(key, options))
    return check_literal(options[key], value, loc, path)


def model_settings(raw: Any, path: tuple, loc: Locator) -> dict:
    """A standalone model section (a distillation student), resolved with its defaults."""
    model = GROUPS["model"]
    if not isinstance(raw, dict):
        raise loc.error(path, "must be a mapping of model settings (name, width, ...)", raw)
    variant = check_variant(model, raw.get("name", model.options["name"].default),
                            path + ("name",), loc)
    out = defaults({"model": variant})["model"]
    options = model.options_for(variant)
    for key, value in raw.items():
        if key == "name":
            continue
        if key not in options:
            raise loc.error(path + (str(key),), f"not an option of model '{variant}'", key,
                            suggestion=suggest(key, options))
        out[key] = check_literal(options[key], value, loc, path + (key,))
        if key == "kwargs":
            check_fixed_mapping(out[key], path + (key,), loc, "space.model.kwargs")
    missing = [k for k, o in options.items() if o.required and out[k] is None]
    if missing:
        raise loc.error(path, f"{missing[0]} is required for model '{variant}'",
                        show_value=False)
    return out


def data_overrides(raw: Any, path: tuple, loc: Locator) -> dict:
    """Data settings that replace the trial's for a stage (finetune on shifted data)."""
    data = GROUPS["data"]
    if not isinstance(raw, dict):
        raise loc.error(path, "must be a mapping of data settings", raw)
    variant = None
    if "dataset" in raw:
        variant = check_variant(data, raw["dataset"], path + ("dataset",), loc)
    out = {}
    for key, value in raw.items():
        opt = (data.options_for(variant).get(key) if variant else declaration(data, key)) \
            if isinstance(key, str) else None
        if opt is None:
            raise loc.error(path + (str(key),), "unknown data option"
                            + (f" for dataset '{variant}'" if variant else ""), key,
                            suggestion=suggest(key, data.options_for(variant) if variant
                                               else data.all_keys()))
        out[key] = check_literal(opt, value, loc, path + (key,))
        if key == "kwargs":
            check_fixed_mapping(out[key], path + (key,), loc, "space.data.kwargs")
    if variant:
        missing = [k for k, o in data.variants[variant].items() if o.required and k not in out]
        if missing:
            raise loc.error(path, f"{missing[0]} is required for dataset '{variant}'",
                            show_value=False)
    return out


def augment_overrides(raw: Any, path: tuple, loc: Locator) -> dict:
    """Augmentation settings that replace the trial's for a stage (a distilled student on
    mixed images, which the teacher labels)."""
    group = GROUPS["augment"]
    if not isinstance(raw, dict):
        raise loc.error(path, "must be a mapping of augment settings", raw)
    out = {}
    for key, value in raw.items():
        opt = declaration(group, key) if isinstance(key, str) else None
        if opt is None:
            raise loc.error(path + (str(key),), "unknown augment option", key,
                            suggestion=suggest(key, group.all_keys()))
        out[key] = check_literal(opt, value, loc, path + (key,))
    return out
