"""Stock pieces for testing and benchmarking the orchestration without training a network.

`known_work_fit` has `trainers.fit`'s signature and contract (per-epoch report, last.pt/best.pt
written before the report, resume, early stop on a True return) but its epochs take a known
time and its accuracy is a known function of the learning rate, optimiser and width, so tests
can tell a good sampler from a bad one and benchmarks can compare wall time with the ideal.
Use it with `search run --fit search.testing:known_work_fit`; an epoch lasts
`$SEARCH_KNOWN_WORK_SECONDS` seconds (default 0.2) unless the config's `toy.epoch_seconds` says;
with `$SEARCH_KNOWN_WORK_LOG` (or `toy.log`) each call appends a line (lr, start epoch, time,
the GPUs it was given). With `$SEARCH_KNOWN_WORK_MEET=N:DIR` (or `toy.meet`) and DIR present,
each call signs in to DIR and waits (up to 2 minutes) until N calls have: trials overlap for
sure, e.g. to see them on every node of a cluster however long Ray takes to start a trial's
actor. `toy.oom_if_lr_above` raises torch's OutOfMemoryError, as a GPU trial that does not fit.

`ToySpace` is a hand-made object with the interface of `spaces.Space` over a three- or
four-parameter space (conditional momentum for sgd), so the search package is testable on its
own.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from search.errors import UserError

ENV_SECONDS = "SEARCH_KNOWN_WORK_SECONDS"
ENV_LOG = "SEARCH_KNOWN_WORK_LOG"
ENV_MEET = "SEARCH_KNOWN_WORK_MEET"


@dataclass
class KnownWorkResult:
    """The fields of trainers.FitResult that the search reads."""

    history: list[dict]
    best_epoch: int | None
    best_val_accuracy: float
    test_accuracy: float
    num_params: int
    stopped_early: bool
    checkpoint: str | None


def quality(config: dict) -> float:
    """The accuracy a configuration converges to: best at lr 1e-2, adamw, width 32."""
    opt = config.get("optimizer", {})
    lr = float(opt.get("lr", 1e-2))
    q = 0.99 - 0.06 * (math.log10(lr) + 2.0) ** 2
    if opt.get("name") == "sgd":
        q -= 0.04 * (1.0 - float(opt.get("momentum", 0.0)))
    width = float(config.get("model", {}).get("width", 32))
    q -= 0.01 * abs(math.log2(width / 32.0))
    return min(0.995, max(0.05, q))


def _toy(config: dict) -> dict:
    return config.get("toy", {}) or {}


def known_work_fit(config: dict, *, report: Callable[[dict], Any] | None = None,
                   checkpoint_dir: str | None = None, resume_from: str | None = None,
                   cpus: int | None = None, task: Any = None) -> KnownWorkResult:
    toy = _toy(config)
    epochs = int(config.get("train", {}).get("epochs", 3))
    seconds = float(toy.get("epoch_seconds", os.environ.get(ENV_SECONDS, 0.2)))
    lr = float(config.get("optimizer", {}).get("lr", 1e-2))
    if toy.get("user_error_if_lr_above") is not None and lr > toy["user_error_if_lr_above"]:
        raise UserError(f"optimizer.lr: toy rule lr <= {toy['user_error_if_lr_above']}, "
                        f"got {lr:g}")
    q = quality(config)
    num_params = int(config.get("model", {}).get("width", 32)) * 1000
    start, history, best = 0, [], (None, -1.0)
    if resume_from:
        state = json.loads(Path(resume_from).read_text())
        start, history = state["epoch"], state["history"]
        best = tuple(state["best"])
    log = toy.get("log") or os.environ.get(ENV_LOG)
    if log:  # one line per call: tests count (re)starts, benchmarks time the first one
        with open(log, "a") as f:
            f.write(json.dumps({"lr": lr, "start": start, "pid": os.getpid(),
                                "t": time.time(),
                                "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\n")
    _meet(toy.get("meet") or os.environ.get(ENV_MEET))
    if toy.get("oom_if_lr_above") is not None and lr > toy["oom_if_lr_above"]:
        import torch

        raise torch.OutOfMemoryError(f"CUDA out of memory (toy rule lr <= "
                                     f"{toy['oom_if_lr_above']}, got {lr:g})")
    stopped = False
    for epoch in range(start + 1, epochs + 1):
        time.sleep(seconds)
        diverged = toy.get("diverge_if_lr_above") is not None and lr > toy["diverge_if_lr_above"]
        if not diverged and toy.get("error_if_lr_above") is not None \
                and lr > toy["error_if_lr_above"]:
            raise RuntimeError(f"toy failure at epoch {epoch} (lr {lr:g})")
        acc = q * (1.0 - 0.5 ** epoch)
        loss = float("nan") if diverged else -math.log(max(acc, 1e-6))
        if diverged:
            raise _diverged(epoch, loss)
        metrics = {"epoch": epoch, "train_loss": loss, "val_loss": loss, "val_accuracy": acc,
                   "lr": lr, "grad_norm": 1.0, "epoch_time": seconds, "samples_per_sec": 1.0,
                   "num_params": num_params}
        history.append(metrics)
        if acc > best[1]:
            best = (epoch, acc)
        if checkpoint_dir:
            state = {"epoch": epoch, "history": history, "best": list(best)}
            Path(checkpoint_dir, "last.pt").write_text(json.dumps(state))
            if best[0] == epoch:
                Path(checkpoint_dir, "best.pt").write_text(json.dumps(state))
        if report is not None and report(dict(metrics)):
            stopped = True
            break
    return KnownWorkResult(history, best[0], best[1], round(q - 0.002, 6), num_params, stopped,
                           str(Path(checkpoint_dir, "best.pt")) if checkpoint_dir else None)


# Read by `search run` (commands/run.py): a fit function with `trains_model = False` leaves no
# model for the stages to start from, so they are skipped.
known_work_fit.trains_model = False  # type: ignore[attr-defined]


def _meet(spec: str | None, timeout: float = 120.0) -> None:
    """Sign in to the meeting folder of `N:DIR` and wait until N calls have (see above)."""
    if not spec:
        return
    count, _, folder = spec.partition(":")
    if not Path(folder).is_dir():
        return
    Path(folder, f"{os.getpid()}-{time.time_ns()}").touch()
    deadline = time.monotonic() + timeout
    while len(list(Path(folder).iterdir())) < int(count) and time.monotonic() < deadline:
        time.sleep(0.1)


def _diverged(epoch: int, loss: float) -> Exception:
    """The trainer's own DivergedError, raised as trainers.fit raises it."""
    from trainers.errors import DivergedError

    return DivergedError(epoch, loss)


@dataclass
class ToySpace:
    """A stand-in for spaces.Space: lr (log), optimizer (adamw|sgd), sgd's momentum
    (conditional), width (log int)."""

    name: str = "toy"
    seed: int = 0
    epochs: int = 3
    trials: int = 6
    sampler_name: str = "tpe"
    pruner_name: str = "none"
    conditional: bool = True
    objective: Any = field(default_factory=lambda: {"metric": "val_accuracy",
                                                    "direction": "maximize"})
    toy: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=dict)
    resources: dict = field(default_factory=lambda: {"cpu": 1, "gpu": 0, "max_concurrent": None})
    tracking: dict = field(default_factory=lambda: {"enabled": False})
    train: dict = field(default_factory=dict)  # more train settings, e.g. {"device": "cpu"}
    stages: list = field(default_factory=list)
    space_format = "toy"  # how a run's record of it is read back (search/runs.py)

    def to_yaml(self) -> str:
        import dataclasses

        import yaml

        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)

    def __post_init__(self) -> None:
        self.budget = {"trials": self.trials, "max_epochs": None, "time_limit": None,
                       "target": None, **self.budget}
        self.sampler = {"name": self.sampler_name, "seed": None, "n_startup_trials": 3,
                        "multivariate": True, "group": True, "constant_liar": True,
                        "qmc_type": "sobol", **self.sampler}
        self.pruner = {"name": self.pruner_name, "grace_period": 1, "reduction_factor": 2,
                       "brackets": 1, "perturbation_interval": 1, "quantile_fraction": 0.25,
                       **self.pruner}

    @property
    def has_conditionals(self) -> bool:
        return self.conditional

    @property
    def fixed(self) -> dict:
        return self.config_from_params({})

    def define_by_run(self, trial) -> dict:
        trial.suggest_float("optimizer.lr", 1e-4, 1.0, log=True)
        choices = ["adamw", "sgd"] if self.conditional else ["adamw", "adam"]
        name = trial.suggest_categorical("optimizer.name", choices)
        if name == "sgd":
            trial.suggest_float("optimizer.momentum", 0.0, 0.99)
        trial.suggest_int("model.width", 8, 64, log=True)
        return self.config_from_params(trial.params)

    def distributions(self) -> dict | None:
        if self.conditional:
            return None
        from optuna import distributions as d

        return {"optimizer.lr": d.FloatDistribution(1e-4, 1.0, log=True),
                "optimizer.name": d.CategoricalDistribution(["adamw", "adam"]),
                "model.width": d.IntDistribution(8, 64, log=True)}

    def grid(self) -> dict[str, list]:
        return {"optimizer.lr": [1e-3, 1e-2, 1e-1], "optimizer.name": ["adamw", "adam"],
                "model.width": [16, 32]}

    def config_from_params(self, params: dict) -> dict:
        config: dict[str, dict] = {"optimizer": {"name": "adamw", "lr": 1e-2},
                                   "model": {"name": "toy", "width": 32},
                                   "train": {"epochs": self.epochs, "seed": self.seed,
                                             **self.train},
                                   "toy": dict(self.toy)}
        for key, value in params.items():
            group, option = key.split(".", 1)
            config[group][option] = value
        return config


def toy_space(text: str, filename: str | None = None) -> ToySpace:
    """A ToySpace from its `to_yaml()` text."""
    import yaml

    return ToySpace(**yaml.safe_load(text))
