"""The peers of benchmark bench_peers.py, and the training function every arm shares.

`fit` is `trainers.fit` with a log: each epoch appends `{"t", "trial", "epoch", "val"}` and each
finished call `{"t", "trial", "final": true, "best_val", "test", "epochs"}` to $PEERS_LOG, so
every arm is timed the same way (wall-clock times, one file). With $PEERS_TRAIN_SUBSAMPLE=N
the training split is cut to N images (a fixed, seeded subset; validation and test are whole),
loaded once per process: the reduced workload of the benchmark.

The peers, each a fresh process (`python bench/_peers.py ARM SPACE.yaml OUTPUT`):
- `tune_tpe`: the Ray Tune script a practitioner writes by hand: Tune's own OptunaSearch (TPE,
  the space's start-up trials and seed) + ASHA with the space's settings, 1 CPU per trial,
  `reuse_actors`, 2 trials at once; the last epoch's report is held back until the test
  accuracy is known (as ours does), else ASHA stops the trial at max_t before it is tested.
- `tune_random`: the same with random search (Optuna's RandomSampler through OptunaSearch).
- `optuna`: plain Optuna, TPE + its SuccessiveHalvingPruner (min resource = the space's
  grace period, the same reduction factor: ASHA's rungs), two worker processes on one journal
  file study, the budget shared (MaxTrialsCallback); each worker seeded differently, else both
  draw the same start-up points.
All of them search the space's own parameters through its define-by-run function and build
each trial's config with `config_from_params`, so only the orchestration differs from ours.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ENV_LOG, ENV_SUBSAMPLE = "PEERS_LOG", "PEERS_TRAIN_SUBSAMPLE"
ROOT = Path(__file__).resolve().parents[1]
_DATA: dict = {}


def _log(row: dict) -> None:
    path = os.environ.get(ENV_LOG)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"t": time.time(), **row}) + "\n")


def subsampled_fit(n: int) -> str:
    """The `--fit` of a benchmark that trains on n training images (0: all of them): this
    module's fit, with $PEERS_TRAIN_SUBSAMPLE set here, before Ray starts, so that every
    trial process inherits it."""
    os.environ[ENV_SUBSAMPLE] = str(n or 0)
    return "bench._peers:fit"


def _subsampled(config: dict):
    """The config's data with the training split cut to $PEERS_TRAIN_SUBSAMPLE images."""
    n = int(os.environ.get(ENV_SUBSAMPLE) or 0)
    if n <= 0:
        return None
    if "data" not in _DATA:
        import dataclasses

        import torch

        from trainers.batches import TensorSplit
        from trainers.datasets import load_data

        data = load_data(config.get("data", {}))
        train = data.train
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n]
        _DATA["data"] = dataclasses.replace(data, train=TensorSplit(
            train.x[keep], train.y[keep], None if train.indices is None else train.indices[keep]))
    return _DATA["data"]


def fit(config: dict, *, report=None, checkpoint_dir=None, resume_from=None, cpus=None):
    """trainers.fit with the benchmark's log (see the module docstring)."""
    import trainers

    trial = uuid.uuid4().hex[:12]

    def logged(metrics: dict):
        _log({"trial": trial, "epoch": int(metrics["epoch"]),
              "val": float(metrics["val_accuracy"])})
        return report(metrics) if report is not None else None

    data = _subsampled(config)
    result = trainers.fit(config, report=logged, checkpoint_dir=checkpoint_dir,
                          resume_from=resume_from, cpus=cpus,
                          **({"data": data} if data is not None else {}))
    _log({"trial": trial, "final": True, "best_val": float(result.best_val_accuracy),
          "test": float(result.test_accuracy), "epochs": len(result.history)})
    return result


def _importable():
    """This module under its package name: Ray then pickles the trainable by reference (a
    function of `__main__` would travel by value, with a copy of the module's globals)."""
    import importlib

    return importlib.import_module("bench._peers")


def _space(path: str):
    from spaces import load_space

    return load_space(path, filename=path)


# -- Ray Tune + OptunaSearch + ASHA ------------------------------------------------------------
class Define:
    """The space's define-by-run function for OptunaSearch: picklable (Tune saves the searcher
    with it), and returning None (a returned config would be merged into the params)."""

    def __init__(self, space_path: str):
        self.space_path = space_path
        self._space = None

    def __getstate__(self) -> dict:
        return {"space_path": self.space_path, "_space": None}

    def __call__(self, trial) -> None:
        if self._space is None:
            self._space = _space(self.space_path)
        self._space.define_by_run(trial)


def _tune_trainable(config: dict) -> None:
    from ray import tune

    space = _space(os.environ["PEERS_SPACE"])
    settings = space.config_from_params(dict(config))
    epochs = int(settings["train"]["epochs"])
    held: dict = {}

    def report(metrics: dict) -> None:
        row = {"val_accuracy": float(metrics["val_accuracy"]), "epoch": int(metrics["epoch"])}
        if row["epoch"] < epochs:
            tune.report(row)
        else:
            held.update(row)

    result = fit(settings, report=report, cpus=1)
    tune.report({**held, "test_accuracy": float(result.test_accuracy)})


def run_tune(space_path: str, output: str, random: bool) -> int:
    os.environ.update({"PEERS_SPACE": space_path, "RAY_USAGE_STATS_ENABLED": "0",
                       "RAY_AUTH_MODE": "disabled", "RAY_AIR_NEW_OUTPUT": "0",
                       "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"})
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = _space(space_path)
    seed, trials = space.seed, space.budget.trials
    epochs = int(space.fixed["train"]["epochs"])
    sampler = optuna.samplers.RandomSampler(seed=seed) if random else \
        optuna.samplers.TPESampler(seed=seed,
                                   n_startup_trials=int(space.sampler.n_startup_trials))

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    searcher = OptunaSearch(_importable().Define(space_path), metric="val_accuracy",
                            mode="max", sampler=sampler, study_name="peers")
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                              grace_period=int(space.pruner.grace_period),
                              reduction_factor=float(space.pruner.reduction_factor))
    tuner = tune.Tuner(
        tune.with_resources(_importable()._tune_trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    metric="val_accuracy", mode="max", num_samples=trials,
                                    max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(name="peers", storage_path=str(Path(output).absolute()),
                                  verbose=0))
    results = tuner.fit()
    return 0 if results.num_errors == 0 else 1


# -- plain Optuna: TPE + SuccessiveHalvingPruner, two workers on one study ---------------------
def optuna_worker(space_path: str, output: str, worker: int) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = _space(space_path)
    trials = space.budget.trials
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(Path(output, "journal.log"))))
    sampler = optuna.samplers.TPESampler(
        seed=space.seed * 1000 + worker, n_startup_trials=int(space.sampler.n_startup_trials))
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=int(space.pruner.grace_period),
        reduction_factor=int(space.pruner.reduction_factor))
    study = optuna.create_study(study_name="peers", storage=storage, sampler=sampler,
                                pruner=pruner, direction="maximize", load_if_exists=True)

    def objective(trial) -> float:
        space.define_by_run(trial)
        settings = space.config_from_params(dict(trial.params))

        def report(metrics: dict) -> None:
            trial.report(float(metrics["val_accuracy"]), int(metrics["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()

        return float(fit(settings, report=report, cpus=1).best_val_accuracy)

    study.optimize(objective, n_trials=trials,
                   callbacks=[optuna.study.MaxTrialsCallback(trials, states=None)])
    return 0


def run_optuna(space_path: str, output: str) -> int:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    # the study exists before the workers start, so neither races to create it
    storage = JournalStorage(JournalFileBackend(str(Path(output, "journal.log"))))
    optuna.create_study(study_name="peers", storage=storage, direction="maximize",
                        load_if_exists=True)
    procs = [subprocess.Popen([sys.executable, __file__, "optuna_worker", space_path, output,
                               str(w)]) for w in (0, 1)]
    return max(p.wait() for p in procs)


def main() -> int:
    arm, space_path, output = sys.argv[1:4]
    Path(output).mkdir(parents=True, exist_ok=True)
    if arm in ("tune_tpe", "tune_random"):
        return run_tune(space_path, output, random=arm == "tune_random")
    if arm == "optuna":
        return run_optuna(space_path, output)
    if arm == "optuna_worker":
        return optuna_worker(space_path, output, int(sys.argv[4]))
    sys.exit(f"unknown arm {arm!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
