"""Post-search stages on the trainer side: finetune, distill, quantize, and their measurements.

    sm = from_checkpoint("runs/quickstart/.../best.pt")
    for stage in space.stages:               # validated by spaces.sections.check_stages
        sm = run_stage(stage, sm, report=print)
        print(stage["stage"], measure(sm, data))
    save_stage_model(sm, "final.pt"); sm = load_stage_model("final.pt")

Each stage takes the previous `StageModel` and returns a new one (the previous is not changed).
Pure PyTorch: no Ray, Optuna or MLflow here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import TrainerError
from .distillation import DISTANCES, DistillationTask, distill
from .finetuning import KNNClassifier, finetune
from .measurement import measure
from .model import KINDS, StageModel, from_checkpoint
from .quantization import quantize
from .stagefile import load_stage_model, save_stage_model

__all__ = ["STAGES", "StageInfo", "StageModel", "KINDS", "DISTANCES", "DistillationTask",
           "KNNClassifier", "from_checkpoint", "run_stage", "measure", "save_stage_model",
           "load_stage_model"]


@dataclass(frozen=True)
class StageInfo:
    """One stage: `run(stage, previous, *, data, cpus, report) -> StageModel`."""

    name: str
    run: Callable[..., StageModel]
    doc: str


STAGES: dict[str, StageInfo] = {info.name: info for info in (
    StageInfo("finetune", finetune, "train on from the previous model at a smaller lr; "
              "transfer mode freezes the backbone; optional kNN head"),
    StageInfo("distill", distill, "a smaller student learns from the previous model"),
    StageInfo("quantize", quantize, "float16, int8 dynamic or int8 static (calibrated)"),
)}


def run_stage(stage: dict, previous: StageModel, *, data=None, cpus: int | None = None,
              report=None) -> StageModel:
    """Run one validated stage (`as_dict()` of an item of `Space.stages`) on the previous
    model. `data`: a datasets.Data to reuse (a finetune with `data` settings loads its own);
    `report(metrics)`: fit's per-epoch callable. A stage with `enabled: false` returns
    `previous` unchanged."""
    name = stage.get("stage")
    if name not in STAGES:
        raise TrainerError(f"stage: unknown stage {name!r}; expected one of "
                           f"{', '.join(STAGES)}")
    if not stage.get("enabled", True):
        return previous
    return STAGES[name].run(stage, previous, data=data, cpus=cpus, report=report)
