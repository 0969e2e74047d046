"""The user's own code a space names: a training function (`fit:` or `--fit`) and the model and
data factories whose arguments it searches. Imported, never run, before any trial: a missing
module, a name that is not a function, a signature that cannot take what we pass, an argument
the factory does not have — each one line, exit 2 (docs/own-training.md).
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from search.errors import UserError
from search.lifecycle.plan import FINAL_METRICS

DEFAULT_FIT = "trainers:fit"
# What a trial passes to a training function besides the config; each is given only when the
# function declares it (or takes **kwargs), so `def fit(config, *, report)` is enough.
FIT_KEYWORDS = ("report", "checkpoint_dir", "resume_from", "cpus")


class ContractError(UserError):
    """A training function broke its contract (docs/own-training.md: what it reports and
    returns): a mistake of the code, not of the sampled values, which every trial repeats."""


RETURNED_NUMBERS = ("best_val_accuracy", "test_accuracy", "num_params")


def importable_from_cwd(unless_inside: Path | None = None) -> None:
    """The current folder on the import path, last: a space's factories and `fit:` import from
    the folder the command runs in (as `python script.py` would from the script's), while a
    file there can never shadow an installed module. A local Ray's workers get the driver's
    path; a cluster's get the modules shipped (search/cluster/shipping.py). Only for commands
    given a space to run, and never when the current folder is inside `unless_inside` (the
    output folder `search resume` reads: files someone left there must not become code)."""
    cwd = os.getcwd()
    if unless_inside is not None and Path(cwd).resolve().is_relative_to(
            Path(unless_inside).resolve()):
        return
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr or "fit")


def resolve_fit(path: str, where: str | None = None) -> Callable[..., Any]:
    """The training function at "package.module:function"; `where` names it in messages
    (default `--fit PATH`; a space's `file:line: fit: PATH`)."""
    where = where or f"--fit {path}"
    try:
        fn = _import(path)
    except Exception as err:  # noqa: BLE001 - any error of the user's module: one line
        why = " ".join(str(err).split())
        if not isinstance(err, (ImportError, AttributeError)):
            why = f"{type(err).__name__}: {why}"
        raise UserError(f"{where}: cannot import it ({why}); expected "
                        '"package.module:function", a training function fn(config, *, '
                        "report, ...) (docs/own-training.md)") from None
    if not callable(fn):
        raise UserError(f"{where}: is not a function (a {type(fn).__name__})")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn  # a builtin without a signature: trust it
    try:
        sig.bind({}, report=None)
    except TypeError as err:
        raise UserError(f"{where}: its signature {sig} cannot take (config, report=...) "
                        f"({err}); write fn(config, *, report, checkpoint_dir=None, "
                        "resume_from=None, cpus=None)") from None
    return fn


def fit_keywords(fn: Callable[..., Any], offered: dict[str, Any]) -> dict[str, Any]:
    """The keywords of `offered` that `fn` takes (all of them when it has **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return offered
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return offered
    return {k: v for k, v in offered.items() if k in params}


def check_report(metrics: Any, earlier: list[dict], epochs: int,
                 expects: tuple[str, ...] = ()) -> None:
    """ContractError unless `metrics`, given to report() after the `earlier` reports, is the
    next epoch's (1, 2, ... up to `epochs`) and, on the first report, holds the metrics in
    `expects` (the objectives a pruner reads every epoch)."""
    epoch = metrics.get("epoch") if isinstance(metrics, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ContractError("report(metrics): metrics must be a dict with the epoch number "
                            f"(1, 2, ...) under 'epoch', got {metrics!r:.80}")
    last = earlier[-1]["epoch"] if earlier else None
    if last is not None and epoch <= last:
        raise ContractError(f"report(metrics): epoch {epoch} after epoch {last}; report each "
                            "epoch once, in order (1, 2, ...)")
    if epoch > epochs:
        raise ContractError(f"report(metrics): epoch {epoch} is beyond the trial's {epochs} "
                            "epochs (train.epochs, the budget its pruner uses); train "
                            "config['train']['epochs'] epochs")
    missing = [m for m in expects if m not in metrics] if not earlier else []
    if missing:
        raise ContractError(f"report(metrics): the objective {missing[0]} is not among the "
                            f"reported metrics ({', '.join(sorted(map(str, metrics)))}); "
                            "report it every epoch, or make objective.metric one that is")


def fit_result(result: Any, reported: list[dict]) -> Any:
    """What a training function returned, as the fields the search reads (FitResult's):
    a dict or None is read as a record whose missing `history` is what it reported."""
    if result is None:
        result = {}
    if isinstance(result, (list, tuple, str, bytes, int, float)):
        raise ContractError(f"fit returned a {type(result).__name__}; return a dict (history, "
                            "best_epoch, best_val_accuracy, test_accuracy, num_params, each "
                            "optional) or nothing")
    if isinstance(result, dict):
        result = SimpleNamespace(**{"history": list(reported), **result})
    history = getattr(result, "history", None) or []
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ContractError(f"fit returned history of {type(history).__name__}; expected a "
                            "list of the per-epoch metric dicts (or leave it out)")
    for key in RETURNED_NUMBERS:
        value = getattr(result, key, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ContractError(f"fit returned {key} {value!r:.40}; expected a number (or leave "
                                "it out)")
    # within the epochs trained: a resumed fit reports (and returns) only its later epochs
    best, last = getattr(result, "best_epoch", None), history[-1].get("epoch") if history else None
    if best is not None and last is not None and (
            isinstance(best, bool) or not isinstance(best, int) or not 1 <= best <= last):
        raise ContractError(f"fit returned best_epoch {best!r:.40}, not an epoch it trained "
                            f"(1..{last}); return one (or leave it out: the last)")
    return result


def epoch_objectives(objectives) -> tuple[str, ...]:
    """The objectives' metrics every report must carry (those a pruner reads per epoch; the
    whole-trial ones, FINAL_METRICS, come at the end)."""
    return tuple(o.metric for o in objectives if o.metric not in FINAL_METRICS)


def space_fit(space: Any, override: str | None = None) -> str:
    """The training function of a run: `--fit` over the space's `fit:` over the built-in."""
    return override or getattr(space, "fit", None) or DEFAULT_FIT


def check_space_fit(space: Any) -> None:
    """The space's `fit:` imports and can be called (a located one-line error if not)."""
    path = getattr(space, "fit", None)
    if path and hasattr(space, "error"):
        where = str(space.error(("fit",), "", show_value=False)).rstrip(": ")
        resolve_fit(path, f"{where} {path}")


def check_factories(space: Any) -> None:
    """Every argument a model or data factory is given (fixed in `kwargs` or searched under
    `space.<group>.kwargs`) is one of its parameters, where the factory can be imported now
    and has no **kwargs. A factory that does not import is left to the trial (or to the
    driver's data check) to report."""
    fixed = getattr(space, "fixed", None)
    if not isinstance(fixed, dict) or not hasattr(space, "error"):
        return  # not a spaces.Space (the search package's own test doubles)
    for group in ("model", "data"):
        settings = fixed.get(group, {})
        path = settings.get("factory")
        if not path:
            continue
        try:
            fn = _import(path)
            params = inspect.signature(fn).parameters
        except Exception:  # noqa: BLE001 - not importable here: the trial says why
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        names = ", ".join(params) or "none"
        rule = f"not an argument of {group} factory {path} (its parameters: {names})"
        for name in settings.get("kwargs") or {}:
            if name not in params:
                raise space.error((group, "kwargs", name), rule, name)
        for p in space.params + space.constants:
            name = p.path.rsplit(".", 1)[1]
            if p.path.startswith(f"{group}.kwargs.") and name not in params:
                raise space.error(p, rule, name)


def check_user_code(space: Any, fit: str | None = None) -> None:
    """Before any trial: the run's training function and the factories' arguments."""
    if fit:
        resolve_fit(fit)
    else:
        check_space_fit(space)
    check_factories(space)
