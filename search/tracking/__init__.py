"""MLflow as the system of record of a search, written from the driver by a Ray Tune callback.

    callback = make_tracking(space, output_dir=out, run_id=run_id, study=study,
                             trial_number=searcher.number_of)   # None: tracking disabled
    tune.RunConfig(callbacks=[..., callback])
    ...tuner.fit()...        # on_experiment_end writes the report and registers the model
    callback.report          # FinishReport: best run, model version, writes still spooled

One experiment per space, one parent run per search run, one child run per trial and one
`stages` child holding a run per post-search stage; every name a user reads there comes from
names.py. See docs/DESIGN.md ("Tracking") and search/README.md ("MLflow").
"""
from __future__ import annotations

from .backend import resolve_uri
from .callback import TrackingCallback
from .factory import make_tracking, sync
from .report import FinishReport
from .settings import Settings
from .tracker import SearchTracker

__all__ = ["FinishReport", "SearchTracker", "Settings", "TrackingCallback", "make_tracking",
           "resolve_uri", "sync"]
