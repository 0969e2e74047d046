"""What a run is told, checked before it creates anything: its numbers, its output folder, the
Ray cluster it joins (or the size of its local Ray), its study database and its tracking
backend. A refused run leaves nothing on disk and says why in one line, in seconds: Ray waits
forever for an address where nothing answers, and MLflow retries a dead server for minutes.

`options` is anything with the attributes of search.lifecycle.runner.RunOptions (the command line's
argparse namespace has the same names), so `search run` checks before it imports Ray, Tune or
MLflow, and `run_search` checks again for library callers. Imports stay light here.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from search.errors import UserError


def check_options(options: Any) -> None:
    """The numbers and names a library caller may pass wrong (the command line's types refuse
    them before, search/commands/values.py)."""
    cpus = getattr(options, "cpus", None)
    if cpus is not None and (not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1):
        raise UserError(f"--cpus: must be a whole number >= 1, got {cpus!r}")
    for flag, name in (("--retries", "retries"), ("--warm-start", "warm_start")):
        value = getattr(options, name, 0)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise UserError(f"{flag}: must be a whole number >= 0, got {value!r}")
    fit = getattr(options, "fit", None)
    if fit is not None and not fit.strip():
        raise UserError("--fit: empty; expected package.module:function, a training function "
                        "fn(config, *, report, ...) (docs/own-training.md)")


def ray_running() -> bool:
    """A Ray already started in this process (tests, notebooks) is used as it is."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def check_ray(address: str, where: str) -> None:
    from search.cluster.connect import check_address

    if not ray_running():
        check_address(address, where)


def check_run(space: Any, options: Any) -> str:
    """Everything `search run` is told, checked in the order a user reads the flags; returns
    the study database's URL (search/studies/study.py storage_url)."""
    from search.studies import study as studies
    from search.lifecycle.runs import check_folder, output_dir

    check_options(options)
    fit = getattr(options, "fit", None)
    if fit:  # imported (never run): a missing module or a non-function, said first
        from search.lifecycle.usercode import DEFAULT_FIT, resolve_fit

        if fit != DEFAULT_FIT:  # ours needs no check, nor torch's import
            resolve_fit(fit)
    given = getattr(options, "output", None)
    output = output_dir(space.name, given)
    check_folder(output, "--output" if given else "output folder")
    address = getattr(options, "address", None)
    if address or os.environ.get("RAY_ADDRESS"):
        check_ray(address or os.environ["RAY_ADDRESS"], "--address" if address else
                  "$RAY_ADDRESS")
    elif not ray_running():
        cpus = getattr(options, "cpus", None)
        have = cpus or os.cpu_count() or 1
        need = space.resources.cpu
        if need > have:
            where = f"--cpus {cpus}" if cpus else "this machine"
            raise UserError(f"resources.cpu: each trial asks for {need:g} CPUs but the local "
                            f"Ray has {have} ({where}); lower resources.cpu")
    url = studies.storage_url(getattr(options, "storage", None), output)
    tracking = space.tracking
    if tracking.enabled:
        from search.tracking.backend import precheck, resolve_uri, source_of

        flag = getattr(options, "tracking_uri", None)
        uri = resolve_uri(flag, tracking.uri, output)
        precheck(uri, source_of(flag, tracking.uri), output)
    if not url.startswith("sqlite"):  # a server: reachable now (an SQLite file is made later)
        studies.open_storage(url)
    return url
