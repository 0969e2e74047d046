"""The user's own code on a cluster's workers: Ray's runtime_env `py_modules`.

A space may name code of its user: `--fit`, `data.factory`, `model.factory`, a top-level `fit:`
(or any other `factory` setting, e.g. a distillation student). On the driver that code imports
from the driver's path; on the nodes of a cluster (`--address`, `search submit`) it does not,
and every trial there would fail with `No module named ...`. So the top-level package (or
single-file module) of each reference is found on the driver and shipped with the run:
`py_modules` of `ray.init`, or of the job's runtime_env for `search submit`.

Not shipped: our own packages (the nodes run them: deploy/'s images install them), anything
installed in the interpreter (site-packages, the standard library), and inside a package run
folders, checkpoints and databases (`EXCLUDES`). A package too big for Ray's upload, or a module
the driver cannot find, is one line before Ray starts.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any, Iterator

from search.errors import UserError

OWN = frozenset({"search", "spaces", "trainers"})
# gitignore-style, as Ray reads `excludes`; the same rules size the package below.
EXCLUDED_DIRS = ("runs", "mlruns", "mlartifacts", "__pycache__", ".git", ".ipynb_checkpoints")
EXCLUDED_SUFFIXES = (".pt", ".pth", ".ckpt", ".db", ".pyc")
EXCLUDES = [f"{d}/" for d in EXCLUDED_DIRS] + [f"*{s}" for s in EXCLUDED_SUFFIXES]
# Ray refuses a package of more than its gRPC message size (512 MiB); a zipped package near it
# takes minutes to upload to every node, so stop well before.
MAX_BYTES = 100 * 1024 ** 2
REFERENCE_KEYS = ("factory", "fit")


def references(space: Any, fit: str | None = None) -> list[tuple[str, str]]:
    """(where, "module:function") of every piece of user code the run can call: `fit` (the
    --fit option) and each `factory`/`fit` string anywhere in the space (fixed settings,
    choices, stages)."""
    found = [("--fit", fit)] if fit else []
    tree = _space_tree(space)
    found += [(where, value) for where, value in _walk(tree, "")
              if isinstance(value, str) and ":" in value]
    seen: set[str] = set()
    return [(w, v) for w, v in found if not (v in seen or seen.add(v))]


def _space_tree(space: Any) -> Any:
    if isinstance(space, dict):
        return space
    if hasattr(space, "to_yaml"):
        import yaml

        return yaml.safe_load(space.to_yaml())
    return getattr(space, "fixed", None) or {}


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key in REFERENCE_KEYS and not isinstance(value, (dict, list)):
                yield where, value
            else:
                yield from _walk(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _installed_roots() -> list[Path]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    roots = {Path(p).resolve() for n in names if (p := sysconfig.get_paths().get(n))}
    return sorted(roots)


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def module_location(where: str, spec: str) -> Path | None:
    """The folder (package) or .py file holding the top-level module of `spec`, or None when it
    needs no shipping (ours, installed, built in). UserError when the driver cannot find it."""
    top = spec.partition(":")[0].split(".")[0].strip()
    if not top or top in OWN or top in sys.builtin_module_names:
        return None
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError) as err:
        found, why = None, f" ({err})"
    else:
        why = ""
    if found is None:
        raise UserError(f"{where}: module {top!r} of {spec!r} is not importable here{why}, so "
                        "it cannot be shipped to the cluster's workers; run from the folder "
                        "holding it or put that folder on PYTHONPATH")
    locations = list(found.submodule_search_locations or [])
    if len(locations) > 1:
        raise UserError(f"{where}: package {top!r} of {spec!r} is split over "
                        f"{len(locations)} folders ({', '.join(locations)}); Ray ships one "
                        "folder per package: give it an __init__.py")
    if locations:
        path = Path(locations[0]).resolve()
    elif found.origin and found.has_location and found.origin.endswith(".py"):
        path = Path(found.origin).resolve()
    else:  # an extension module or a frozen one: it came with the interpreter or a wheel
        return None
    return None if _inside(path, _installed_roots()) else path


def shipped_size(path: Path) -> int:
    """Bytes of what Ray would upload from `path` (EXCLUDES left out)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        total += sum((Path(folder) / f).stat().st_size for f in files
                     if not f.endswith(EXCLUDED_SUFFIXES) and (Path(folder) / f).is_file())
    return total


def modules_to_ship(space: Any, fit: str | None = None,
                    max_bytes: int = MAX_BYTES) -> list[str]:
    """The paths to give `py_modules` for the run's user code (empty when there is none)."""
    paths: dict[Path, str] = {}
    for where, spec in references(space, fit):
        path = module_location(where, spec)
        if path is not None and path not in paths:
            paths[path] = f"{where}: {spec}"
    for path, what in paths.items():
        size = shipped_size(path)
        if size > max_bytes:
            raise UserError(
                f"{what}: {path} is {size / 2 ** 20:.0f} MiB to ship to the cluster's workers "
                f"(at most {max_bytes / 2 ** 20:.0f} MiB); move data files out of it (a "
                f"dataset's root, read on the nodes) or install the package on every node")
    return [str(p) for p in paths]


def in_job() -> bool:
    """Whether this process is the driver of a Ray Job (`search submit`): the job's runtime_env
    already carries the user's code to every worker, and Ray refuses a second `py_modules`."""
    return bool(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))


def job_runtime_env(space: Any, fit: str | None, folder: Path) -> dict:
    """The user's code for a Ray Job whose working_dir is `folder`: packages as `py_modules`,
    single-file modules copied into the working_dir (the job server uploads folders only; the
    working_dir is on every worker's path)."""
    import shutil

    packages = []
    for path in map(Path, modules_to_ship(space, fit)):
        if path.is_file():
            shutil.copy2(path, folder / path.name)
        else:
            packages.append(str(path))
    env: dict[str, Any] = {"working_dir": str(folder), "excludes": list(EXCLUDES)}
    return env | ({"py_modules": packages} if packages else {})


def runtime_env(space: Any, fit: str | None, address: str | None) -> dict | None:
    """The runtime_env for `ray.init` when joining a cluster (`address` or $RAY_ADDRESS): the
    user's modules as py_modules; None for a local Ray (its workers share the driver's path)
    or when there is nothing to ship."""
    if not (address or os.environ.get("RAY_ADDRESS")) or in_job():
        return None
    modules = modules_to_ship(space, fit)
    return {"py_modules": modules, "excludes": list(EXCLUDES)} if modules else None
