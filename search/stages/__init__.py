"""After a search: the best trial's checkpoint through the space's `stages:` (finetune, distill,
quantize), each stage taking the previous stage's model, every model measured the same way.
`search run` calls `run_stages` when its search ends; `search stages NAME` calls it later.

    <output>/stages/<run id>/
        pipeline.json                      where it started (trial, checkpoint), attempts, state
        0-best/result.json                 the search's own best model, measured
        1-finetune/{model.pt, result.json}
        2-distill/...   (2-distill.trials/: the students of a distill search)

A stage's folder is complete or absent (written as `<name>.partial`, then renamed), so running
again resumes after the last finished stage, reloading its model.pt; `restart` starts afresh. A
stage whose options changed, or a different source checkpoint, runs again with all after it.
The training itself is trainers.stages' (`run_stage`); this package picks the checkpoint
(source.py), orders, keeps and measures (pipeline.py), searches a distillation's options
(distill.py), prints (table.py) and records in MLflow (search/tracking/stages.py).
"""
from __future__ import annotations

from .files import registry_model
from .pipeline import Outcome, Row, StageFailed, run_stages
from .source import Source, best_trial, enabled_stages, find_source, pick_run
from .table import stage_table, summary_text

__all__ = ["Outcome", "Row", "Source", "StageFailed", "best_trial", "enabled_stages",
           "find_source", "pick_run", "registry_model", "run_stages", "stage_table",
           "summary_text"]
