"""Benchmark 1's baseline: the Ray Tune + Optuna script a practitioner writes by hand for the
same known work (`python bench/_tune_baseline.py TRIALS EPOCHS SECONDS CPUS LOG OUTPUT`).

Same trial shape as `search.testing.known_work_fit` (sleep, report an accuracy, log the start),
Tune's own OptunaSearch (TPE) over the same lr and width, 1 CPU per trial, reuse_actors, an
SQLite study: the orchestration a user would otherwise have, with none of ours (no preflight,
no per-epoch checkpoints, no progress view, no summary).
"""
from __future__ import annotations

import json
import os
import sys
import time


def trainable(config: dict) -> None:
    from ray import tune

    with open(os.environ["BASELINE_LOG"], "a") as f:
        f.write(json.dumps({"t": time.time(), "pid": os.getpid()}) + "\n")
    epochs, seconds = int(os.environ["BASELINE_EPOCHS"]), float(os.environ["BASELINE_SECONDS"])
    for epoch in range(1, epochs + 1):
        time.sleep(seconds)
        tune.report({"val_accuracy": (1 - config["lr"]) * (1 - 0.5 ** epoch)})


def main() -> int:
    trials, epochs, seconds, cpus, log, output = sys.argv[1:7]
    os.environ.update({"BASELINE_LOG": log, "BASELINE_EPOCHS": epochs,
                       "BASELINE_SECONDS": seconds, "RAY_USAGE_STATS_ENABLED": "0",
                       "RAY_AUTH_MODE": "disabled", "RAY_AIR_NEW_OUTPUT": "0"})
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    ray.init(num_cpus=int(cpus), include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    searcher = OptunaSearch(
        {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
         "width": optuna.distributions.CategoricalDistribution([16, 32, 64])},
        metric="val_accuracy", mode="max", study_name="baseline",
        storage=optuna.storages.RDBStorage(f"sqlite:///{output}/study.db"))
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=int(trials),
                                    max_concurrent_trials=int(cpus), reuse_actors=True),
        run_config=tune.RunConfig(name="baseline", storage_path=output, verbose=0))
    results = tuner.fit()
    best = results.get_best_result("val_accuracy", "max")
    print(f"best val_accuracy {best.metrics['val_accuracy']:.4f}")
    return 0 if results.num_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
