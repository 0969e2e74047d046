"""Stock pieces for testing and benchmarking the orchestration without training a network.

`known_work_fit` has `trainers.fit`'s signature and contract (per-epoch report, last.pt/best.pt
written before the report, resume, early stop on a True return) but its epochs take a known
time and its accuracy is a known function of the learning rate, optimiser and width, so tests
can tell a good sampler from a bad one and benchmarks can compare wall time with the ideal.
Use it with `search run --fit search.testing:known_work_fit`; an epoch lasts
`$SEARCH_KNOWN_WORK_SECONDS` seconds (default 0.2) unless its `params.epoch_seconds` says (its
settings are the `params:` of a space naming it as `fit:`); with `$SEARCH_KNOWN_WORK_LOG` (or
`params.log`) each call appends a line (lr, start epoch, time, the GPUs it was given). With
`$SEARCH_KNOWN_WORK_MEET=N:DIR` (or `params.meet`) and DIR present, each call signs in to DIR
and waits (up to 2 minutes) until N calls have: trials overlap for sure, e.g. to see them on
every node of a cluster however long Ray takes to start a trial's actor.
`params.oom_if_lr_above` raises torch's OutOfMemoryError, as a GPU trial that does not fit.
`params.seed_noise` moves the accuracy by seed_noise * (train.seed % 3 - 1), so repeated seeds
(`budget.seeds`) differ by known amounts; `params.user_error_if_seed` fails the training of that
train.seed with a UserError.

`toy_space(...)` writes the YAML of a three- or four-parameter space of such trials
(conditional momentum for sgd) and loads it with `spaces.load_space`: tests of the search
package run on real spaces.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
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
    """Its own settings: the `params` of a space that names it as `fit:`."""
    return config.get("params", {}) or {}


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
    seed = int(config.get("train", {}).get("seed") or 0)
    if toy.get("user_error_if_seed") is not None and seed == toy["user_error_if_seed"]:
        raise UserError(f"train.seed: toy rule seed != {seed}")
    q = quality(config) + float(toy.get("seed_noise", 0.0)) * (seed % 3 - 1)
    num_params = int(config.get("model", {}).get("width", 32)) * 1000
    start, history, best = 0, [], (None, -1.0)
    if resume_from:
        state = json.loads(Path(resume_from).read_text())
        start, history = state["epoch"], state["history"]
        best = tuple(state["best"])
    log = toy.get("log") or os.environ.get(ENV_LOG)
    if log:  # one line per call: tests count (re)starts, benchmarks time the first one
        with open(log, "a") as f:
            f.write(json.dumps({"lr": lr, "start": start, "seed": seed, "pid": os.getpid(),
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


def failing_fit(config: dict, **kw: Any) -> None:
    """A training function whose every trial fails (as Optuna's testing `fail_objective`)."""
    raise RuntimeError("failing_fit: every trial of it fails")


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


# The toy space's own choices where the section defaults would make tests slow or coarse:
# fewer random trials before TPE's model, a halving by 2, PBT steps every epoch.
TOY_SAMPLER = {"n_startup_trials": 3}
TOY_PRUNER = {"grace_period": 1, "reduction_factor": 2, "perturbation_interval": 1}


def toy_space(name: str = "toy", *, seed: int = 0, epochs: int = 3, trials: int = 6,
              sampler_name: str | None = None, pruner_name: str = "none",
              conditional: bool = True, objective: Any = None, toy: dict | None = None,
              budget: dict | None = None, sampler: dict | None = None,
              pruner: dict | None = None, resources: Any = None, tracking: dict | None = None,
              train: dict | None = None, stages: list | None = None) -> Any:
    """A real `spaces.Space` (made by `load_space` from YAML) of `known_work_fit` trials over
    optimizer.lr (log), optimizer.name (adamw|sgd, with sgd's momentum conditional; adamw|adam
    when not `conditional`) and model.width (log int); a grid sampler gets finite lists (3 lrs
    x 2 optimisers x 2 widths). `toy` are known_work_fit's own settings (its `params`); a
    space with `stages` names no `fit:` (stages follow the built-in trainer's checkpoints), so
    its runs give `--fit` and take no `toy` settings. The sections' keywords are written into
    the YAML as they are (`tracking` replaces the toy's default, which is off)."""
    import yaml

    from spaces import capabilities as caps, load_space

    pruner_caps = caps.PRUNERS.get(pruner_name)
    if sampler_name is None:  # what spaces would pick, named so its own options can be set
        searcherless = pruner_caps is not None and not pruner_caps.uses_searcher
        sampler_name = caps.SEARCHERLESS_SAMPLER if searcherless else "tpe"
    grid = sampler_name == "grid"
    second = "sgd" if conditional else "adam"
    searched: dict[str, Any] = {
        "optimizer": {"lr": {"choices": [1e-3, 1e-2, 1e-1]} if grid else
                      {"low": 1e-4, "high": 1.0, "log": True},
                      "name": {"choices": ["adamw", second]}},
        "model": {"width": {"choices": [16, 32]} if grid else {"low": 8, "high": 64,
                                                               "log": True}}}
    if conditional:
        searched["optimizer"]["momentum"] = {"low": 0.0, "high": 0.99,
                                             "when": {"optimizer.name": ["sgd"]}}
    sampler_caps = caps.SAMPLERS.get(sampler_name)
    own = dict(sampler_caps.options) if sampler_caps else {}
    pruner_own = dict(pruner_caps.options) if pruner_caps else {}
    doc: dict[str, Any] = {"name": name, "seed": seed}
    if not stages:
        doc["fit"] = "search.testing:known_work_fit"
    doc["train"] = {"epochs": epochs, **(train or {})}
    if toy:
        doc["params"] = dict(toy)
    doc["space"] = searched
    doc["objective"] = objective or {"metric": "val_accuracy", "direction": "maximize"}
    doc["budget"] = {"trials": trials, **(budget or {})}
    doc["sampler"] = {"name": sampler_name,
                      **{k: v for k, v in TOY_SAMPLER.items() if k in own}, **(sampler or {})}
    doc["pruner"] = {"name": pruner_name,
                     **{k: v for k, v in TOY_PRUNER.items() if k in pruner_own},
                     **(pruner or {})}
    if resources is not None:
        doc["resources"] = resources if isinstance(resources, dict) else resources.as_dict()
    doc["tracking"] = {"enabled": False} if tracking is None else tracking
    if stages:
        doc["stages"] = stages
    return load_space(yaml.safe_dump(doc, sort_keys=False), filename=f"{name}.yaml")
