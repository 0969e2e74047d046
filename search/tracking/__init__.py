"""MLflow as the system of record of a search, written from the driver by a Ray Tune callback.

    callback = make_tracking(space, output_dir=out, run_id=run_id, study=study,
                             trial_number=searcher.number_of)   # None: tracking disabled
    tune.RunConfig(callbacks=[..., callback])
    ...tuner.fit()...        # on_experiment_end writes the report and registers the model
    callback.report          # FinishReport: best run, model version, writes still spooled

One experiment per space, one parent run per search run, one child run per trial (and per
stage: `callback.start_child(name)`). See docs/DESIGN.md ("Tracking").
"""
from __future__ import annotations

import importlib

# Loaded on first use: `search run` reads the backend's URI (backend.py) for its first line,
# before Ray (which callback.py imports) starts.
_HOMES = {"FinishReport": "report", "SearchTracker": "tracker", "Settings": "settings",
          "TrackingCallback": "callback", "make_tracking": "factory", "resolve_uri": "backend",
          "sync": "factory"}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
