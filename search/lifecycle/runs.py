"""The output folder of a search and its run folders.

    <output>/                 default ./runs/<space name>/, made absolute
        study.db              the Optuna study (unless --storage / $SEARCH_STORAGE points away)
        run-YYYYmmdd-HHMMSS-xxxxxx/  one Tune experiment per `search run` (xxxxxx: random:
                              drivers sharing a study must not share an id); search_run.json (how
                              it was started, by which process, whether it and its stages
                              ended) and space.yaml (the space, for `search resume`, `search
                              best` and `search stages`). Text only: nothing in an output folder
                              is ever unpickled, so a folder from someone else runs no code.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from search.studies import study as studies
from search.errors import UserError

RUN_FILE = "search_run.json"
SPACE_FILE = "space.yaml"
# How a run's space record is read back, by the `space_format` its run file names: a fixed
# registry (never a module named by the file itself).
SPACE_FORMATS = {"space": ("spaces", "load_space")}


def output_dir(name: str, output: str | None) -> Path:
    return Path(output or Path("runs") / name).expanduser().absolute()


def check_folder(folder: Path, where: str) -> None:
    """A UserError unless `folder` is, or can be made, a folder this process writes in: not a
    file or a device, below an existing folder it may write to. Nothing is created."""
    shown = f"{where} {folder}"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{shown}: is not a folder (a {_kind(folder)})")
    base = folder
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UserError(f"{shown}: {base} is a {_kind(base)}, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{shown}: permission denied (cannot write in {base})")


def _kind(path: Path) -> str:
    import stat

    mode = path.stat().st_mode
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def new_run_id(output: Path) -> str:
    """A new run id. The trials of a run are found in a shared study by it, and two drivers
    (other hosts, other output folders) may start in the same second: a random part keeps
    their ids apart (24 bits: one pair in 16 million would clash)."""
    while True:
        run_id = f"{time.strftime('run-%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        if not (output / run_id).exists():
            return run_id


def write_run_file(exp_dir: Path, info: dict) -> None:
    exp_dir.mkdir(parents=True, exist_ok=True)
    tmp = exp_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, exp_dir / RUN_FILE)


def read_run_file(exp_dir: Path) -> dict:
    return json.loads((exp_dir / RUN_FILE).read_text())


def runs_of(output: Path) -> list[Path]:
    """The run folders of an output folder, oldest first."""
    if not output.is_dir():
        return []
    return sorted(p for p in output.iterdir() if (p / RUN_FILE).is_file())


def driver_alive(info: dict) -> bool:
    """Whether the process that started a run still runs (on this host)."""
    if info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return False
    cmdline = Path(f"/proc/{info['pid']}/cmdline")
    return not cmdline.exists() or b"python" in cmdline.read_bytes() or \
        b"search" in cmdline.read_bytes()


def write_space(exp_dir: Path, space: Any) -> str:
    """Write the run's space record (YAML); its format's name for the run file."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / SPACE_FILE).write_text(space.to_yaml())
    return "space"


def read_space(exp_dir: Path, space_format: str | None = "space") -> Any:
    """The space a run was started with, from its YAML record."""
    import importlib

    path = exp_dir / SPACE_FILE
    if not path.is_file():
        raise UserError(f"{exp_dir}: the run's space record {SPACE_FILE} is missing")
    if space_format not in SPACE_FORMATS:
        raise UserError(f"{exp_dir / RUN_FILE}: space_format: unknown format (one of "
                        f"{', '.join(SPACE_FORMATS)}), got {space_format!r}")
    module, name = SPACE_FORMATS[space_format]
    return getattr(importlib.import_module(module), name)(path.read_text(),
                                                          filename=str(path))


def run_space(exp_dir: Path, info: dict | None = None) -> Any:
    info = read_run_file(exp_dir) if info is None else info
    return read_space(exp_dir, info.get("space_format", "space"))


# Stages of a run (the run file's "stages"): "pending" until `search run`/`resume` runs them
# after the search, "running" while they run, then "done"; "skipped" when the search ended
# badly or --no-stages left them to `search stages`; None when the space has none.
STAGES_LEFT = ("pending", "running")


def unfinished(info: dict) -> str | None:
    """What `search resume` would continue in a run, or None: "search" (the driver died or
    was stopped before the search ended), "stages" (the search ended, its stages did not), or
    "alive" (its driver still runs). `search status` and `search resume` both ask this."""
    state = info.get("state")
    if state == "running" and driver_alive(info):
        return "alive"
    if state != "finished":
        return "search"
    if info.get("stages") in STAGES_LEFT:
        return "alive" if info.get("stages") == "running" and driver_alive(info) else "stages"
    return None


def find_run(output: Path) -> Path:
    """The run folder to resume: the newest one whose search or stages did not finish."""
    runs = runs_of(output)
    if not runs:
        raise UserError(f"resume: no runs in {output}; start one with `search run SPACE.yaml`"
                        " (or give --output)")
    last = runs[-1]
    info = read_run_file(last)
    left = unfinished(info)
    if left is None:
        raise UserError(f"resume: the last run {last.name} of {info['space_name']} finished; "
                        "nothing to resume (run `search run` again to add trials)")
    if left == "alive":
        raise UserError(f"resume: run {last.name} is still running (pid {info['pid']}); wait "
                        "for it or stop it first")
    return last


def output_of(target: str | None, output: str | None = None) -> tuple[str | None, Path]:
    """(study name when known, output folder) for what a user names: --output, a space name
    (./runs/<name>, the default of `search run`), a space file, or an output folder of runs."""
    if not target:
        if output:
            return None, output_dir("", output)
        raise UserError("name a search: NAME (its ./runs/NAME folder), its space file, or "
                        "--output DIR")
    path = Path(target).expanduser()
    if target.endswith((".yaml", ".yml")) and path.is_file():
        from spaces import load_space

        name = load_space(target).name
        return name, output_dir(name, output)
    if path.is_dir() and not output:
        if runs := runs_of(path.absolute()):
            return read_run_file(runs[-1])["study_name"], path.absolute()
        if not output_dir(target, None).is_dir():  # a folder, not the name of a search
            return None, path.absolute()
    return target, output_dir(target, output)


def locate(target: str, output: str | None = None,
           storage: str | None = None) -> tuple[str, Path, str]:
    """(study name, output folder, storage URL) for what a user names (see output_of)."""
    name, out = output_of(target, output)
    if name is None:
        raise UserError(f"{target}: no search found in {out}; run `search run SPACE.yaml` "
                        "first, or give --output / --storage")
    runs = runs_of(out)
    given = storage or os.environ.get(studies.ENV_STORAGE)
    url = studies.storage_url(storage, out) if given or not runs \
        else own_storage(read_run_file(runs[-1])["storage_url"], out)
    if not runs and not given and not (out / "study.db").is_file():
        raise UserError(f"{target}: no search found in {out}; run `search run SPACE.yaml` "
                        "first, or give --output / --storage")
    return name, out, url


def own_storage(url: str, output: Path) -> str:
    """The study database of a run file, read from the output folder it is in now: a default
    `study.db` recorded in another folder while this one holds its own means the folder was
    copied or moved since the run (its own copy is the one to read)."""
    if url.startswith("sqlite:///"):
        recorded = Path(url[len("sqlite:///"):])
        own = output / "study.db"
        if recorded.name == own.name and recorded.parent != output and own.is_file():
            return f"sqlite:///{own}"
    return url


def space_of_trial(output: Path, trial) -> Any:
    """The space a trial was sampled from (its run's record), to rebuild its config."""
    run_id = trial.user_attrs.get(studies.RUN_ID)
    folder = output / str(run_id)
    if not (folder / RUN_FILE).is_file():
        runs = runs_of(output)
        if not runs:
            raise UserError(f"trial #{trial.number}: its run {run_id} is not in {output}; give "
                            "--output with the folder of the runs")
        folder = runs[-1]
    return run_space(folder)
