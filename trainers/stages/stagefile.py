"""Stage files: a `StageModel` written and read back.

A stage file holds a state_dict and plain values only (read back with weights_only=True, so
loading runs no code): {"format", "config", "kind", "meta", "state_dict"}. `meta["dims"]` (input
channels, classes, image size) and `meta["steps"]` (what was done to the float model built from
the config: a kNN head, float16, int8) are enough to rebuild the module, empty, and load the
state_dict into it; a quantised model is rebuilt by quantising a fresh float model the same way.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..checkpoints import read_saved
from ..errors import TrainerError
from .finetuning import rebuild_knn
from .model import StageModel, _load, build_float, quiet
from .quantization import REBUILD

FORMAT = "torch-search-stage/1"


def save_stage_model(sm: StageModel, path: str | os.PathLike) -> Path:
    """Write the state_dict, config, kind and meta (atomically); never a pickled module."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with quiet():
        torch.save({"format": FORMAT, "config": sm.config, "kind": sm.kind,
                    "meta": copy.deepcopy(sm.meta), "state_dict": sm.model.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


def rebuilders() -> dict[str, Callable[[nn.Module, dict, dict], nn.Module]]:
    """step op -> f(model, step, dims) that redoes the step's structure (values come from the
    state_dict loaded afterwards)."""
    return {"knn": rebuild_knn, **REBUILD}


def load_stage_model(path: str | os.PathLike) -> StageModel:
    """A model written by `save_stage_model`: built from its config, its steps redone, its
    state_dict loaded. TrainerError naming the path when the file is missing or damaged."""
    path = Path(path).expanduser()
    with quiet():
        saved = read_saved(path, "stage model", "a file written by save_stage_model")
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise TrainerError(f"stage model {path}: not a stage model file of this version "
                           f"(expected format {FORMAT!r})")
    config, kind, meta = saved["config"], saved["kind"], saved["meta"]
    model = build_float(config, meta["dims"])
    steps = rebuilders()
    for step in meta["steps"]:
        if step["op"] not in steps:
            raise TrainerError(f"stage model {path}: unknown step {step['op']!r}")
        model = steps[step["op"]](model, step, meta["dims"])
    with quiet():
        _load(model, saved["state_dict"], f"stage model {path}", f"its {kind} model")
    return StageModel(config, model.eval(), kind, meta)
