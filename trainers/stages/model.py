"""What flows between the stages: `StageModel`, read from a training checkpoint.

A stage model is written to and read from a stage file by stagefile.py (which rebuilds the
module with the finetune and quantize steps, so it sits above them).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ..checkpoints import load_checkpoint
from ..errors import TrainerError
from ..loop import resolve_config

KINDS = ("float32", "float16", "int8_dynamic", "int8_static")
# torch.ao.quantization's deprecation chatter and that of quantised tensors (read, written and
# converted by the stages)
_QUIET = (r".*torch\.ao\.quantization is deprecated", r".*reduce_range will be deprecated",
          r".*torch\.quantize_per_tensor, torch\.quantize_per_channel",
          r".*TypedStorage is deprecated", r".*must run observer before calling")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the deprecation chatter of torch.ao.quantization and quantised tensors."""
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        yield


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
