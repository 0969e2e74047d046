"""One config tried end to end without training: the checks a search's driver runs before any
trial starts, so that a mistake every trial would make is said once, in one line.

`check_config(config)` loads the data (a factory is called and what it returned checked,
`user_data.py`; the split options checked against the data's own split), builds the model (a
factory's model checked on a dry batch), sets up the run (optimiser, schedule, the augmentation
refusing options the data cannot take) and runs one forward pass and loss on two real training
samples, checking the model's logits against the data's classes. Any mistake is a TrainerError.
Pure PyTorch: search/lifecycle/preflight.py calls it for spaces with user code (a data or model factory).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .errors import TrainerError


def check_logits(out: object, batch: int, num_classes: int, what: str) -> None:
    """TrainerError unless `out` is a (batch, num_classes) float tensor of logits."""
    if not isinstance(out, Tensor):
        raise TrainerError(f"{what} returns {type(out).__name__}; expected a tensor of logits")
    if tuple(out.shape) != (batch, num_classes):
        raise TrainerError(f"{what} maps a batch of {batch} samples to shape "
                           f"{tuple(out.shape)}; the data have {num_classes} classes, so "
                           f"({batch}, {num_classes}) logits are expected")
    if not out.is_floating_point():
        raise TrainerError(f"{what} returns {out.dtype} values; expected float logits")
    if num_classes > 1 and bool((out >= 0).all()) and \
            bool(torch.allclose(out.float().sum(1), torch.ones(batch), atol=1e-4)):
        raise TrainerError(f"{what} returns probabilities (each row sums to 1); return logits "
                           "(drop the final softmax): the loss applies softmax itself, and "
                           "a second one flattens every gradient")


def check_config(config: dict) -> dict:
    """Try `config` as `trainers.fit` would, on the CPU, without training. Returns what was
    found ({"input_shape", "num_classes", "split", "train", "val", "test"} sizes) and the
    loaded data ("data", on the CPU), for a caller that would otherwise load them again."""
    from .datasets import load_data
    from .loop import _Run, derive_seeds, resolve_config
    from .batches import iterate_batches
    from .models import build_model

    cfg = resolve_config(config)
    cfg["train"] = {**cfg["train"], "device": "cpu", "precision": "fp32"}
    device = torch.device("cpu")
    data = load_data(cfg["data"], device=device)
    model = build_model(cfg["model"], in_channels=data.in_channels,
                        num_classes=data.num_classes, image_size=data.image_size)
    run = _Run(cfg, data, model, None, device, derive_seeds(cfg["train"]["seed"]))
    x, y = next(iterate_batches(data.train, 2, shuffle=False, device=device))
    what = (f"model.factory {cfg['model']['factory']}" if cfg["model"]["name"] == "factory"
            else f"model {cfg['model']['name']}")
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:
        raise TrainerError(f"{what} fails on a batch of the data (shape {tuple(x.shape)}): "
                           f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                           ) from err
    check_logits(out, len(x), data.num_classes, what)
    model.train()
    x, targets = run.augment(x, y, run.gens["augment"], run.gens["mixing"])
    with torch.no_grad():
        run.task(model, x, targets, temperature=1.0)
    return {"input_shape": data.input_shape, "num_classes": data.num_classes,
            "split": data.split, "train": len(data.train), "val": len(data.val),
            "test": len(data.test), "data": data}


__all__ = ["check_config", "check_logits"]
