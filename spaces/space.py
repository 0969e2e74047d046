"""`load_space` and `Space`: a validated, immutable search space.

load: YAML with lines → top-level keys → `space:` specs (tree.py) → fixed sections
(settings.py) → cross-field probe (rules.py) → search-side sections (sections.py).
"""
from __future__ import annotations

import copy
import os
import re
import stat
from pathlib import Path
from typing import Any

import optuna

from trainers.catalog import GROUPS

from . import sections as S
from .section_types import typed, written
from .capabilities import PRUNERS as PRUNER_CAPS, SEARCHERLESS_SAMPLER, default_pruner
from .errors import MISSING, Raw, SpaceError, suggest
from .free import check_fit, check_params, free_key as _free_key, set_free
from .params import Param
from .rules import check_config, probe
from .settings import (Fixed, check_fixed, check_override, check_required, check_variant,
                       entries, fixed_variants, parse_override, resolve)
from .specs import split_space
from .tree import build_params
from .yamlio import Locator, load_yaml

SEARCH_SECTIONS = ("objective", "budget", "sampler", "pruner", "resources", "tracking",
                   "stages")
TOP_KEYS = ("name", "description", "seed", "fit", *GROUPS, "params", "space", *SEARCH_SECTIONS)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a folder and a study name
SHIPPED_DIR = Path(__file__).resolve().parent


class Space:
    """A search space. Read-only: every accessor returns a copy or a frozen section."""

    def __init__(self, *, name: str, description: str, seed: int, fixed: Fixed,
                 params: list[Param], sections: dict[str, Any], probed: bool,
                 loc: Locator, source: Path | None = None, fit: str | None = None) -> None:
        self._name, self._description, self._seed, self._fit = name, description, seed, fit
        self._fixed, self._all, self._sections = fixed, tuple(params), sections
        self._probed, self._loc, self._source = probed, loc, source

    # ------------------------------------------------------------------ what it holds
    name = property(lambda self: self._name)
    description = property(lambda self: self._description)
    seed = property(lambda self: self._seed)
    fit = property(lambda self: self._fit,
                   doc='the training function "package.module:function" named by `fit:`, or '
                   "None (the built-in trainers.fit)")
    source = property(lambda self: self._source, doc="the file it was read from, if any")
    probed = property(lambda self: self._probed,
                      doc="False when too many combinations to check every config at load")
    objectives = property(lambda self: self._sections["objective"],
                          doc="tuple[Objective, ...]: what the search optimises, first first")
    budget = property(lambda self: self._sections["budget"], doc="Budget")
    sampler = property(lambda self: self._sections["sampler"], doc="Sampler")
    pruner = property(lambda self: self._sections["pruner"], doc="Pruner")
    resources = property(lambda self: self._sections["resources"], doc="Resources")
    tracking = property(lambda self: self._sections["tracking"], doc="Tracking")
    stages = property(lambda self: self._sections["stages"], doc="tuple[Stage, ...]")

    @property
    def fixed(self) -> dict[str, dict]:
        """The config without search: defaults ← fixed sections (and literals in `space`)."""
        return resolve(self._fixed, {})

    @property
    def fixed_values(self) -> Fixed:
        """The fixed values as written that differ from the defaults (by group)."""
        return copy.deepcopy(self._fixed)

    @property
    def params(self) -> list[Param]:
        """The Optuna parameters, in sampling order (parents before their branches)."""
        return [p for p in self._all if p.searched]

    @property
    def all_params(self) -> tuple[Param, ...]:
        """Every parameter, searched and constant, in the order written (for writing out)."""
        return self._all

    @property
    def constants(self) -> list[Param]:
        """Literals written inside branches: set when their branch is taken."""
        return [p for p in self._all if not p.searched]

    @property
    def has_conditionals(self) -> bool:
        """Whether some Optuna parameter is sampled only under a condition."""
        return any(p.condition for p in self.params)

    # ------------------------------------------------------------------ sampling
    def define_by_run(self, trial: optuna.Trial) -> dict[str, dict]:
        """Suggest every active parameter on `trial`; return the full resolved config."""
        sampled: dict[str, Any] = {}
        for p in self._all:
            if p.active(sampled):
                sampled[p.name] = p.suggest(trial)
        return self._config(sampled)

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution] | None:
        """The static search space, or None when some parameter is conditional."""
        if self.has_conditionals:
            return None
        return {p.name: p.distribution for p in self.params}

    def grid(self) -> dict[str, list]:
        """Every parameter's values for optuna.samplers.GridSampler (floats need a step)."""
        return {p.name: p.grid() for p in self.params}

    def config_from_params(self, params: dict[str, Any]) -> dict[str, dict]:
        """The config of a past trial from its Optuna params (encoded or decoded values;
        strings such as MLflow's are read as YAML). Inactive extra params are ignored."""
        known = {p.name: p for p in self.params}
        for name in params:
            if name not in known:
                raise SpaceError("unknown parameter of this space", path=str(name),
                                 value=name, suggestion=suggest(name, known))
        sampled: dict[str, Any] = {}
        for p in self._all:
            if not p.active(sampled):
                continue
            if not p.searched:
                sampled[p.name] = p.value
                continue
            if p.name not in params:
                raise SpaceError("missing: the other parameters make it active",
                                 path=p.name)
            sampled[p.name] = _decode(p, params[p.name])
        return self._config(sampled)

    def config_with(self, overrides: dict[str, Any]) -> dict[str, dict]:
        """The fixed config with dotted overrides ({"optimizer.name": "sgd",
        "optimizer.momentum": 0.9}); validated like a space file (SpaceError)."""
        fixed = copy.deepcopy(self._fixed)
        free = {k: v for k, v in overrides.items() if _free_key(k)}
        parsed = [parse_override(k, v) for k, v in overrides.items() if k not in free]
        for gname, key, value in parsed:  # selectors first: they decide what else is valid
            if key == GROUPS[gname].selector:
                fixed[gname][key] = check_variant(GROUPS[gname], value,
                                                  (f"{gname}.{key}",), Locator(None))
        selected = {g: fixed[g].get(grp.selector, grp.options[grp.selector].default)
                    for g, grp in GROUPS.items() if grp.selector}
        for gname, key, value in parsed:
            fixed[gname][key] = check_override(GROUPS[gname], key, value, selected.get(gname))
        check_required(fixed, {g: {v} for g, v in selected.items()}, [], Locator(None))
        config = resolve(fixed, {})
        for k, v in free.items():  # a factory's argument or a fit's parameter
            set_free(config, k, v, selected)
        missing = sorted({p.path for p in self.params
                          if p.group == "params" and not p.condition}
                         - {f"params.{k}" for k in config.get("params", {})})
        if missing:  # a fit's own parameter has no default to fall back on
            raise SpaceError(f"searched, with no value outside a search: give it with --set "
                             f"{missing[0]}=VALUE", path=missing[0], file=self._loc.file,
                             show_value=False,
                             line=next(p.line for p in self.params if p.path == missing[0]))
        return check_config(config, Locator(None), " (with the overrides)")

    def sample(self, n: int, seed: int | None = None) -> list[tuple[dict, dict]]:
        """n (params, config) pairs from Optuna's RandomSampler(seed) on an in-memory study:
        the same seed gives the same configs."""
        seed = self._seed if seed is None else seed
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed),
                                    study_name=self._name)
        out = []
        for _ in range(n):
            trial = study.ask()
            config = self.define_by_run(trial)
            params = {p.name: p.decode(trial.params[p.name]) for p in self.params
                      if p.name in trial.params}
            out.append((params, config))
        return out

    def _config(self, sampled: dict[str, Any]) -> dict[str, dict]:
        values = {p.path: sampled[p.name] for p in self._all if p.name in sampled}
        return check_config(resolve(self._fixed, values), self._loc, " (a sampled config)")

    def sections(self) -> dict[str, Any]:
        """The search-side sections as the space file writes them (plain values, defaults
        filled): for writing out, never for reading an option (read the typed attribute)."""
        return {name: written(section) for name, section in self._sections.items()}

    # ------------------------------------------------------------------ writing out
    def to_yaml(self) -> str:
        """The resolved space as YAML; load_space(space.to_yaml()) == space."""
        from .render import space_to_yaml

        return space_to_yaml(self)

    def describe(self) -> str:
        """The readable tree that `search validate` prints."""
        from .render import describe

        return describe(self)

    def error(self, where: tuple | Param, rule: str, value: Any = MISSING,
              **kw: Any) -> SpaceError:
        """A SpaceError located in this space's file: at a YAML path, or where a parameter is
        written (for checks made after loading, such as a factory's signature)."""
        if isinstance(where, Param):
            return SpaceError(rule, path=where.spec_path, value=value, file=self._loc.file,
                              line=where.line, **kw)
        return self._loc.error(where, rule, value, **kw)

    def _canonical(self) -> tuple:
        return (self._name, self._description, self._seed, self._fit, self._fixed, self._all,
                self._sections)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Space):
            return NotImplemented
        return self._canonical() == other._canonical()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Space({self._name!r}, {len(self.params)} searched parameters)"


def _decode(p: Param, value: Any) -> Any:
    candidates = [value]
    if isinstance(value, str):
        try:
            candidates.append(load_yaml(f"v: {value}")[0]["v"])
        except SpaceError:
            pass
    for v in candidates:
        try:
            v = p.decode(v)
        except KeyError:
            continue
        if p.kind == "float" and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        elif p.kind == "int" and isinstance(v, float) and v.is_integer():
            v = int(v)  # JSON round trips (Ray, MLflow) may turn 64 into 64.0
        if p.contains(v):
            return v
    raise SpaceError(f"outside its domain ({p.domain()})", path=p.name, value=value)


# ---------------------------------------------------------------------------- loading
def load_space(source: str | os.PathLike, *, filename: str | None = None) -> Space:
    """A Space from a file path or from YAML text (`filename` names it in messages)."""
    path: Path | None = None
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and (
            source.endswith((".yaml", ".yml")) or _exists(source) or filename == source)):
        path = Path(source)
        text = _read(path)
        filename = filename or str(source)
    else:
        text = str(source)
    data, loc = load_yaml(text, filename)
    stem = Path(filename).stem if filename else "space"
    return _build(data, loc, stem, path)


def _exists(source: str) -> bool:
    try:
        return os.path.lexists(source)
    except (OSError, ValueError):
        return False


def shipped(name: str) -> Path:
    """A space file shipped with the package: shipped("quickstart") → .../quickstart.yaml."""
    names = sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))
    stem = name[:-5] if name.endswith(".yaml") else name
    if stem not in names:
        raise SpaceError("no shipped space of that name (" + ", ".join(names) + ")",
                         value=name, suggestion=suggest(stem, names))
    return SHIPPED_DIR / f"{stem}.yaml"


MAX_FILE_BYTES = 1024 ** 2  # a space file is a few kilobytes; a bigger one is a mistake


def _read(path: Path) -> str:
    """The text of a space file: a regular file (a FIFO would block, /dev/zero never end), at
    most MAX_FILE_BYTES, readable, UTF-8; else one SpaceError naming the file."""
    def fail(rule: str, suggestion: str | None = None) -> SpaceError:
        return SpaceError(rule, file=str(path), show_value=False, suggestion=suggestion)

    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise fail("no such space file (a symbolic link to a missing file)") from None
        folder = path.parent if path.parent.is_dir() else SHIPPED_DIR
        near = suggest(path.name, [p.name for p in folder.glob("*.y*ml")])
        # the whole path, however long: cut, it would drop the part that differs
        raise fail("no such space file", Raw(repr(str(folder / near))) if near else None) \
            from None
    except PermissionError:
        raise fail("permission denied (cannot read it)") from None
    except (OSError, ValueError) as err:  # ELOOP, ENAMETOOLONG, ENOTDIR, an embedded NUL
        reason = getattr(err, "strerror", None) or str(err)
        raise fail(f"cannot open it ({reason})") from None
    if stat.S_ISDIR(info.st_mode):
        raise fail("is a folder, not a space file")
    if not stat.S_ISREG(info.st_mode):
        raise fail("not a regular file (a device, FIFO or socket); give a YAML file")
    if info.st_size > MAX_FILE_BYTES:
        raise fail(f"larger than {MAX_FILE_BYTES // 1024 ** 2} MiB ({info.st_size:,} bytes); a "
                   "space file is a few kilobytes")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # it may have grown since the stat
    except PermissionError:
        raise fail("permission denied (cannot read it)") from None
    except OSError as err:
        raise fail(f"cannot read it ({err.strerror or err})") from None
    if len(data) > MAX_FILE_BYTES:
        raise fail(f"larger than {MAX_FILE_BYTES // 1024 ** 2} MiB; a space file is a few "
                   "kilobytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise fail(f"not a text file (UTF-8 YAML expected; byte {err.start} is not UTF-8)") \
            from None


def _build(data: Any, loc: Locator, stem: str, source: Path | None) -> Space:
    if not isinstance(data, dict):
        raise loc.error((), "a space file must be a YAML mapping of sections (name, data, "
                        "model, ..., space, objective, ...)", data)
    for key in data:
        if key not in TOP_KEYS:
            raise loc.error((str(key),), "unknown top-level key (one of " + ", ".join(TOP_KEYS)
                            + ")", key, suggestion=suggest(key, TOP_KEYS))
    name = data.get("name", stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise loc.error(("name",), "must be letters, digits, '_', '.', '-' (it names "
                        "the study and the experiment)", name)
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise loc.error(("description",), "must be text", description)
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise loc.error(("seed",), "must be an integer >= 0", seed)

    fit = check_fit(data.get("fit"), loc)
    folded, specs = split_space(data.get("space"), loc)
    parsed = build_params(specs, fixed_variants(data, folded, loc), loc)
    fixed = check_fixed(data, folded, parsed.possible, loc)
    params = check_params(data.get("params"), folded.get("params", {}), loc)
    _check_own_fit(fit, params, parsed.params, data, loc)
    if fit is not None:
        fixed["params"] = params
    check_required(fixed, parsed.possible, parsed.params, loc)
    probed = probe(parsed.params, fixed, loc)
    searched = [p for p in parsed.params if p.searched]

    objective = S.check_objective(data.get("objective"), loc)
    pruner = S.check_section(S.PRUNER, data.get("pruner"), ("pruner",), loc,
                             {"name": default_pruner([o["metric"] for o in objective])})
    searcherless = not PRUNER_CAPS[pruner["name"]].uses_searcher
    sampler = S.check_section(S.SAMPLER, data.get("sampler"), ("sampler",), loc,
                              {"name": SEARCHERLESS_SAMPLER if searcherless else "tpe",
                               "seed": seed})
    sampler["seed"] = seed if sampler["seed"] is None else sampler["seed"]
    budget = S.check_section(S.BUDGET, data.get("budget"), ("budget",), loc)
    if budget["max_epochs"] is None:
        budget["max_epochs"] = _max_epochs(fixed, parsed.params)
    tracking = S.check_section(S.TRACKING, data.get("tracking"), ("tracking",), loc)
    for key in ("experiment", "register_as"):
        tracking[key] = tracking[key] or name
    found = {
        "objective": objective, "budget": budget, "sampler": sampler, "pruner": pruner,
        "resources": S.check_section(S.RESOURCES, data.get("resources"), ("resources",), loc),
        "tracking": tracking,
        "stages": S.check_stages(data.get("stages"), loc),
    }
    S.check_combination(objective, sampler, pruner, budget, data, searched, loc)
    _derive_seeds(fixed, data, folded, seed, loc)
    return Space(name=name, description=description, seed=seed, fixed=fixed,
                 params=parsed.params, sections=typed(found), probed=probed, loc=loc,
                 source=source, fit=fit)


def _check_own_fit(fit: str | None, params: dict, searched: list[Param], data: dict,
                   loc: Locator) -> None:
    """`params` reach only a `fit:` function; stages continue the built-in trainer's models."""
    if fit is None:
        where = ("params",) if params and ("params",) in loc.lines else ("space", "params")
        if params or any(p.group == "params" for p in searched):
            raise loc.error(where, "params are passed only to your own training function, "
                            'the built-in one would ignore them: name it with fit: '
                            '"package.module:function" (docs/own-training.md)',
                            show_value=False)
        return
    stages = data.get("stages")
    if stages and any(not isinstance(s, dict) or s.get("enabled", True) for s in stages):
        raise loc.error(("stages",), "stages continue from the built-in trainer's checkpoints; "
                        "a fit: function's models are its own (remove stages)",
                        show_value=False)


# The settings the master `seed:` is the default of (weights and batches; the data split)
SEEDED = (("train", "seed"), ("data", "split_seed"))


def _derive_seeds(fixed: Fixed, data: dict, folded: dict, seed: int, loc: Locator) -> None:
    """`seed: N` is the fixed value of those settings unless the file writes them (a sampled
    value still wins where a parameter sets one). With N > 0 a written default is kept in the
    canonical form, so `to_yaml` writes it back rather than letting N take its place."""
    if not seed:
        return
    for gname, key in SEEDED:
        written = key in entries(data, folded, gname, loc)
        fixed[gname].setdefault(key, GROUPS[gname].options[key].default if written else seed)


def _max_epochs(fixed: Fixed, params: list[Param]) -> int:
    """budget.max_epochs by default: the most epochs any trial can train."""
    values = [resolve(fixed, {})["train"]["epochs"]]
    for p in params:
        if p.path == "train.epochs":
            values += list(p.choices) if p.kind == "categorical" else \
                [p.value] if p.kind == "constant" else [p.distribution.high]
    return max(values)
