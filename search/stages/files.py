"""The files of the pipeline: result.json and pipeline.json written atomically, and the model
registry's loader for a stage's model.pt."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PIPELINE_FILE, RESULT_FILE, MODEL_FILE = "pipeline.json", "result.json", "model.pt"


def plain(value: Any) -> Any:
    """The stage's options as result.json holds them (JSON types), to compare."""
    return json.loads(json.dumps(value, default=str))


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_result(folder: Path, result: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, folder / RESULT_FILE)


def registry_model(path: str):
    """The MLflow registry's loader for a stage's model.pt: (model, input example, metadata)."""
    import torch
    from trainers.datasets import load_data
    from trainers.stages import load_stage_model

    sm = load_stage_model(path)
    data = load_data(sm.config["data"])
    test = data.test
    if hasattr(test, "x"):
        example = test.x[:2].detach().cpu()
    else:
        example = torch.stack([test[i][0] for i in range(min(2, len(test)))])
    meta = {"input_mean": list(data.mean), "input_std": list(data.std),
            "image_size": list(data.image_size), "num_classes": data.num_classes,
            "dataset": data.name, "stage_kind": sm.kind}
    return sm.model.eval(), example.float(), meta
