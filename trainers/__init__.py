"""PyTorch training for classifiers of images, sequences and feature rows. Knows nothing about
Ray, Optuna or MLflow.

    from trainers import fit
    result = fit({"data": {"dataset": "mnist5k"}}, report=print)

The public names are imported on first use (PEP 562), so `import trainers.catalog` (what the
space language needs) does not pay for importing torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "fit": "loop", "FitResult": "result", "evaluate": "loop", "select_device": "loop",
    "resolve_config": "loop",
    "OPTIMIZERS": "optim", "create_optimizer": "optim", "optimizer_kwargs": "optim",
    "SCHEDULERS": "schedules", "Schedule": "schedules",
    "AUGMENTATIONS": "augment", "build_augment": "augment",
    "Task": "losses", "ClassificationTask": "losses",
    "load_checkpoint": "checkpoints", "load_weights": "checkpoints",
    "WeightAverager": "averaging",
    "DATASETS": "datasets", "Data": "datasets", "load_data": "datasets",
    "MODELS": "models", "build_model": "models", "count_parameters": "models",
    "TrainerError": "errors", "DivergedError": "errors",
    "check_config": "preflight",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trainers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
