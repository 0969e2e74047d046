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

import importlib

# Imported when first used (PEP 562): `search.tracking.backend` alone, which `search run`
# reads to check its tracking URI before anything starts, must not import MLflow (seconds).
_EXPORTS = {"resolve_uri": ".backend", "TrackingCallback": ".callback",
            "make_tracking": ".factory", "sync": ".factory", "FinishReport": ".report",
            "Settings": ".settings", "SearchTracker": ".tracker"}

__all__ = ["FinishReport", "SearchTracker", "Settings", "TrackingCallback", "make_tracking",
           "resolve_uri", "sync"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
