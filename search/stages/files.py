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
    from search.tracking.registry import input_example
    from trainers.datasets import load_data
    from trainers.stages import load_stage_model

    sm = load_stage_model(path)
    example, meta = input_example(load_data(sm.config["data"]))
    return sm.model.eval(), example, {**meta, "stage_kind": sm.kind}
