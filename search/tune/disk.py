"""Keeps a long search from filling the disk: a trial that will never be used again — stopped by
a scheduler or failed — loses its checkpoints as soon as it ends. Its learning curve stays in the
study and in MLflow; finished trials keep theirs (`search best`, the stages and MLflow's top-k
copy read them). PBT is left alone: it copies other trials' checkpoints."""
from __future__ import annotations

import logging

from ray import tune

from search.tune.searcher import FINISHED_KEY

log = logging.getLogger(__name__)


class DiskBudget(tune.Callback):
    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if not (trial.last_result or {}).get(FINISHED_KEY):
            drop_checkpoints(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        drop_checkpoints(trial)


def drop_checkpoints(trial) -> int:
    """Deletes the trial's checkpoint_* folders wherever Tune stores them (local or remote
    storage); returns how many. A failure only costs disk, so it is logged, not raised."""
    import pyarrow.fs as pafs

    fs, root = trial.storage.storage_filesystem, trial.path
    try:
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        folders = [e.path for e in entries if e.type == pafs.FileType.Directory
                   and e.base_name.startswith("checkpoint_")]
        for folder in folders:
            fs.delete_dir(folder)
        return len(folders)
    except OSError as err:
        log.warning("could not delete the checkpoints of %s: %s", trial.trial_id, err)
        return 0
