"""Variants of a space file for the search benchmarks: the same space with a few settings
changed (pruner, sampler, seed, trials, epochs), loaded through spaces.load_space."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def variant(path: str | Path, *, name: str, trials: int | None = None,
            epochs: int | None = None, **sections: dict) -> Any:
    """The space at `path` renamed, with budget.trials, train.epochs (and max_epochs) and whole
    search sections (pruner={...}, sampler={...}) replaced."""
    from spaces import load_space

    text = variant_yaml(path, name=name, trials=trials, epochs=epochs, **sections)
    return load_space(text, filename=f"{name}.yaml")


def variant_yaml(path: str | Path, *, name: str, trials: int | None = None,
                 epochs: int | None = None, **sections: dict) -> str:
    """`variant`'s space as YAML text (for a run through the command line)."""
    from spaces.yamlio import dump_yaml, load_yaml

    data, _ = load_yaml(Path(path).read_text(), str(path))
    data["name"] = name
    data.pop("stages", None)  # the search alone is measured
    data["tracking"] = {"enabled": False}
    if trials is not None:
        data.setdefault("budget", {})["trials"] = trials
    if epochs is not None:
        data.setdefault("train", {})["epochs"] = epochs
        data.setdefault("budget", {})["max_epochs"] = epochs
        pruner = data.get("pruner") or {}
        if pruner.get("grace_period", 1) > epochs:
            pruner["grace_period"] = max(1, epochs // 4)
    for key, value in sections.items():
        data[key] = value
    return dump_yaml(data)


def search(space: Any, output: Path, fit: str = "trainers:fit", cpus: int | None = None) -> dict:
    """Run one search (the library path of `search run`) and measure it."""
    from search.studies import study as studies
    from search.lifecycle.runner import RunOptions, run_search

    start = time.time()
    outcome = run_search(space, RunOptions(output=str(output), new=True, fit=fit, live=False,
                                           retries=0, cpus=cpus))
    wall = time.time() - start
    study = studies.load_study(studies.open_storage(outcome.storage_url), space.name)
    trials = studies.of_run(study.trials, outcome.run_id)
    best = studies.best_trials(study)
    return {
        "wall_s": round(wall, 1),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "complete": sum(t.state.name == "COMPLETE" for t in trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "failed": sum(t.state.name == "FAIL" for t in trials),
        "best_val": best[0].values[0] if best else None,
        "best_test": best[0].user_attrs.get("test_accuracy") if best else None,
    }
