"""Keeps a long search from filling the disk: a trial that will never be used again — stopped by
a scheduler or failed — loses its checkpoints as soon as it ends. Its learning curve stays in the
study and in MLflow; finished trials keep theirs (`search best`, the stages and MLflow's top-k
copy read them). PBT is left alone: it copies other trials' checkpoints.

A trial keeps only its newest checkpoint while it runs, deleted here rather than by Tune's
`CheckpointConfig(num_to_keep=1)`: with `num_to_keep` set, Tune rewrites its whole experiment
state (every trial's, O(trials)) each time a trial has saved that many checkpoints, i.e. every
epoch, so a search's bookkeeping grew with the square of its trials (bench/bench_scale.py).
Nothing of ours reads that state; Tune still saves it on its own clock (~5% of the time)."""
from __future__ import annotations

import logging

from ray import tune

from search.tune.searcher import FINISHED_KEY

log = logging.getLogger(__name__)


class DiskBudget(tune.Callback):
    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        drop_checkpoints(trial, keep=checkpoint.path)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if not (trial.last_result or {}).get(FINISHED_KEY):
            drop_checkpoints(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        drop_checkpoints(trial)


def drop_checkpoints(trial, keep: str | None = None) -> int:
    """Deletes the trial's checkpoint_* folders but `keep` (a checkpoint's path) wherever Tune
    stores them (local or remote storage); returns how many. A failure only costs disk, so it
    is logged, not raised."""
    import posixpath

    import pyarrow.fs as pafs

    fs, root = trial.storage.storage_filesystem, trial.path
    kept = posixpath.basename(keep.rstrip("/")) if keep else None
    try:
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        folders = [e.path for e in entries if e.type == pafs.FileType.Directory
                   and e.base_name.startswith("checkpoint_") and e.base_name != kept]
        for folder in folders:
            fs.delete_dir(folder)
        return len(folders)
    except OSError as err:
        log.warning("could not delete the checkpoints of %s: %s", trial.trial_id, err)
        return 0
