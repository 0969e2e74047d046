"""Settings helpers shared by the registries: resolving one config group and importing factories.

A config group reaching the trainer has normally been validated by `spaces/`, but the trainer is
also called directly (tests, `search train --set`, finetune stages), so it re-checks what it uses
against the same declarations (`trainers/catalog.py`) and fills in defaults for missing keys.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable

from .catalog import GROUPS
from .errors import TrainerError
from .options import KIND_WORDS, NOT_OF_KIND, coerce_kind


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def resolve_group(group_name: str, cfg: dict[str, Any] | None) -> dict[str, Any]:
    """The group's settings with defaults filled in, the selected variant's options only.

    Unknown variants and keys, missing required values and values failing their check raise a
    TrainerError naming `group.key`, the rule and the value.
    """
    group = GROUPS[group_name]
    cfg = dict(cfg or {})
    variant = None
    if group.selector:
        variant = cfg.get(group.selector, group.options[group.selector].default)
        if variant not in group.variants:
            valid = sorted(group.variants)
            raise TrainerError(
                f"{group_name}.{group.selector}: unknown {group.selector} {variant!r}; expected "
                f"one of {', '.join(valid)}{_suggest(str(variant), valid)}")
    options = group.options_for(variant)
    unknown = sorted(set(cfg) - set(options))
    if unknown:
        key = unknown[0]
        where = f" for {group.selector} {variant!r}" if variant else ""
        raise TrainerError(f"{group_name}.{key}: unknown setting{where}; valid settings are "
                           f"{', '.join(sorted(options))}{_suggest(key, sorted(options))}")
    resolved: dict[str, Any] = {}
    for key, opt in options.items():
        value = cfg.get(key, opt.default)
        path = f"{group_name}.{key}"
        if value is None:
            if opt.required:
                raise TrainerError(f"{path}: required for {group.selector} {variant!r}, "
                                   f"but not given: {opt.doc}")
            if not opt.nullable and opt.default is not None:
                raise TrainerError(f"{path}: must not be null ({opt.doc})")
        elif coerce_kind(opt.kind, value) is NOT_OF_KIND:
            raise TrainerError(f"{path}: expected {KIND_WORDS[opt.kind]}, got {value!r}")
        elif opt.check is not None and not opt.check(value):
            raise TrainerError(f"{path}: expected {opt.check.rule}, got {value!r}")
        resolved[key] = value
    return resolved


def import_factory(spec: str, where: str) -> Callable[..., Any]:
    """Import "package.module:function" and return the callable; `where` (e.g. "data.factory")
    names the setting in error messages."""
    module_name, _, attr = str(spec).partition(":")
    if not module_name or not attr:
        raise TrainerError(f'{where}: expected an import path "package.module:function", '
                           f"got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise TrainerError(f"{where}: cannot import module {module_name!r} of {spec!r} "
                           f"({err}); run from its folder or put that on PYTHONPATH") from err
    except Exception as err:  # the user's module failed while importing
        raise TrainerError(f"{where}: importing {module_name!r} of {spec!r} failed: "
                           f"{type(err).__name__}: {err}") from err
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise TrainerError(f"{where}: module {module_name!r} has no attribute {attr!r}"
                           f"{_suggest(attr, public)}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise TrainerError(f"{where}: {spec!r} is a {type(fn).__name__}, not a function")
    return fn


def call_factory(fn: Callable[..., Any], spec: str, where: str, **kwargs: Any) -> Any:
    """Call a user factory; whatever it raises becomes one TrainerError line (cause chained)."""
    try:
        return fn(**kwargs)
    except TrainerError:
        raise
    except Exception as err:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise TrainerError(f"{where}: calling {spec}({args}) failed: "
                           f"{type(err).__name__}: {err}") from err
