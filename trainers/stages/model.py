"""What flows between the stages: `StageModel`, read from a training checkpoint or a stage file.

A stage file holds a state_dict and plain values only (read back with weights_only=True, so
loading runs no code): {"format", "config", "kind", "meta", "state_dict"}. `meta["dims"]` (input
channels, classes, image size) and `meta["steps"]` (what was done to the float model built from
the config: a kNN head, float16, int8) are enough to rebuild the module, empty, and load the
state_dict into it; a quantised model is rebuilt by quantising a fresh float model the same way.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..checkpoints import load_checkpoint
from ..errors import TrainerError
from ..loop import resolve_config

KINDS = ("float32", "float16", "int8_dynamic", "int8_static")
FORMAT = "torch-search-stage/1"


@dataclass
class StageModel:
    """A model between stages: eval mode, on the CPU, float inputs in, float logits out (for
    every kind). `config` is the resolved trainer config that built it (model = architecture,
    data = its data, optimizer.lr = the lr it was trained with); `meta` holds plain values:
    `dims`, `steps` (how to rebuild it), `notes`, `base_lr`, and what the stage measured while
    training."""

    config: dict
    model: nn.Module
    kind: str = "float32"
    meta: dict = field(default_factory=dict)

    @property
    def dims(self) -> dict:
        return self.meta["dims"]

    @property
    def base_lr(self) -> float:
        """The lr the stages' `lr_scale` multiplies: that of the last full training (the search's
        trial, or a distilled student's own), not a finetune's scaled one, so a distill after a
        finetune does not train its student at lr × 0.1 × lr_scale."""
        return float(self.meta.get("base_lr", self.config["optimizer"]["lr"]))


def dims_of(config: dict, data=None) -> dict:
    """Input channels, class count and image size of the model: from `data` when given, else
    from the config's dataset (its samples are read; the split is not made)."""
    if data is not None:
        return {"in_channels": int(data.in_channels), "num_classes": int(data.num_classes),
                "image_size": tuple(int(s) for s in data.image_size)}
    from ..datasets import DATASETS
    from ..settings import resolve_group
    cfg = resolve_group("data", config["data"])
    source = DATASETS[cfg["dataset"]].load(cfg)
    c, size = source.shape[0], tuple(source.shape[1:])
    if cfg["resize"] and source.is_image:
        size = (cfg["resize"], cfg["resize"])
    return {"in_channels": int(c), "num_classes": int(source.num_classes),
            "image_size": tuple(int(s) for s in size)}


def build_float(config: dict, dims: dict) -> nn.Module:
    from ..models import build_model
    model_cfg = {k: v for k, v in config["model"].items() if k != "weights"}  # no re-read
    return build_model(model_cfg, in_channels=dims["in_channels"],
                       num_classes=dims["num_classes"], image_size=tuple(dims["image_size"]))


def check_fits(model: nn.Module, state: dict, where: str, what: str) -> None:
    """TrainerError naming the first tensor of `state` that `model` lacks, misses or shapes
    differently ("incompatible: layer X has shape ...")."""
    own = model.state_dict()
    for key, value in state.items():
        if key not in own:
            raise TrainerError(f"{where}: incompatible with {what}: it has a layer {key!r} "
                               "that the model lacks")
        mine = own[key]
        if isinstance(value, torch.Tensor) and isinstance(mine, torch.Tensor) \
                and value.shape != mine.shape:
            raise TrainerError(f"{where}: incompatible with {what}: layer {key} has shape "
                               f"{tuple(value.shape)} in the file but {tuple(mine.shape)} in "
                               "the model")
    missing = [k for k in own if k not in state]
    if missing:
        raise TrainerError(f"{where}: incompatible with {what}: it lacks layer {missing[0]!r} "
                           f"({len(missing)} missing)")


def _load(model: nn.Module, state: dict, where: str, what: str) -> None:
    check_fits(model, state, where, what)
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise TrainerError(f"{where}: incompatible with {what}: {first}") from None


def from_checkpoint(path: str | os.PathLike, *, data=None) -> StageModel:
    """The selected (best) model of a `best.pt`/`last.pt` written by trainers.fit, with its
    config. `data` (a datasets.Data) gives the input and class dimensions; without it they are
    read from the config's dataset. TrainerError naming the path for a missing or damaged file
    or weights that do not fit the config's model."""
    path = Path(path).expanduser()
    state = load_checkpoint(path)
    try:
        config = resolve_config(state["config"])
    except TrainerError as err:
        raise TrainerError(f"checkpoint {path}: its config is not valid: {err}") from None
    weights = (state["best"] or {}).get("model") or state["model"]
    dims = dims_of(config, data)
    model = build_float(config, dims)
    name = config["model"]["name"]
    _load(model, weights, f"checkpoint {path}", f"its config's model {name!r}")
    meta = {"dims": dims, "steps": [], "notes": [], "source": str(path),
            "epoch": int(state["best"].get("epoch") or state["epoch"]),
            "val_accuracy": float(state["best"].get("val_accuracy", -1.0))}
    return StageModel(config, model.eval(), "float32", meta)


# ------------------------------------------------------------------------------ stage files
def save_stage_model(sm: StageModel, path: str | os.PathLike) -> Path:
    """Write the state_dict, config, kind and meta (atomically); never a pickled module."""
    from .quantization import quiet
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
    from .finetuning import rebuild_knn
    from .quantization import REBUILD
    return {"knn": rebuild_knn, **REBUILD}


def load_stage_model(path: str | os.PathLike) -> StageModel:
    """A model written by `save_stage_model`: built from its config, its steps redone, its
    state_dict loaded. TrainerError naming the path when the file is missing or damaged."""
    from .quantization import quiet
    path = Path(path).expanduser()
    if not path.is_file():
        raise TrainerError(f"stage model {path}: no such file; expected a file written by "
                           "save_stage_model")
    try:
        with quiet():
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged or foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainerError(f"stage model {path}: cannot be read ({reason}); the file is "
                           "damaged or was not written by torch-search") from None
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
