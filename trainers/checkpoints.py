"""Checkpoint files: state_dicts and plain values only, read back with weights_only=True.

A checkpoint is a dict
    {"format": 1, "config", "epoch" (epochs finished), "model", "optimizer", "scheduler",
     "scaler", "averaged", "rng", "best": {"epoch", "val_accuracy", "model"}, "early_stopping",
     "history"}
where "model" is the training model's state_dict, "averaged" the SWA/EMA AveragedModel's (or
None) and best["model"] the weights of the evaluated model at the best epoch so far: what later
stages (finetune, quantisation) load. A pickled module is never written, so loading runs no code.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import TrainerError

FORMAT = 1
KEYS = ("format", "config", "epoch", "model", "optimizer", "scheduler", "scaler", "averaged",
        "rng", "best", "early_stopping", "history")


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write atomically (temporary file, then rename): a crash never leaves half a checkpoint."""
    path = Path(path)
    missing = [k for k in KEYS if k not in state and k != "format"]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")  # a bug in the caller, not the user
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**state, "format": FORMAT}, tmp)
    os.replace(tmp, path)
    return path


def read_saved(path: str | os.PathLike, label: str, expected: str) -> Any:
    """What torch.save wrote at `path`, read on the CPU with weights_only=True (no code runs);
    TrainerError `<label> <path>: <reason>` when it is missing, a folder or damaged. Shared by
    checkpoints and stage files (trainers/stages/stagefile.py)."""
    path = Path(path).expanduser()
    if not path.is_file():
        reason = "it is a folder, not a file" if path.is_dir() else "no such file"
        raise TrainerError(f"{label} {path}: {reason}; expected {expected}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged or foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainerError(f"{label} {path}: cannot be read ({reason}); the file is damaged "
                           "or was not written by torch-search") from None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint at `path`, on the CPU; TrainerError naming the path and the reason."""
    path = Path(path).expanduser()
    state = read_saved(path, "checkpoint", "a last.pt or best.pt written by a training run")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise TrainerError(f"checkpoint {path}: format {found!r} is not supported; expected "
                           f"format {FORMAT} as written by this version of torch-search")
    missing = [k for k in KEYS if k not in state]
    if missing:
        raise TrainerError(f"checkpoint {path}: incomplete, it lacks {', '.join(missing)}")
    return state


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of the selected (best) model in a checkpoint: the state_dict to load into
    `build_model(config["model"], ...)`."""
    return load_checkpoint(path)["best"]["model"]


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random state a run draws from, as tensors and plain values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "generators": {name: g.get_state() for name, g in generators.items()},
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
