"""The training loop: `fit(config) -> FitResult` (docs/DESIGN.md).

One epoch = train (augmented, shuffled batches; `grad_accum` micro-batches of `data.batch_size`
per optimiser step, each micro-batch's loss divided by the number of micro-batches of its step,
so the step sees the mean gradient of the combined batch), validate (plain cross entropy and
accuracy of the evaluated model: the SWA/EMA average once it exists), write `last.pt`/`best.pt`,
then `report(metrics)`. The model with the best validation accuracy is tested once at the end.
Losses and counts stay on the device during an epoch and are read once at its end, so the loop
adds no synchronisation per batch; a non-finite training loss is therefore noticed at the end of
the epoch it happened in. `train_loss` is the task's loss (with the temperature, without the
L1/L2 penalties), comparable across runs with different penalties.
"""
from __future__ import annotations

import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import Context, build_augment
from .averaging import WeightAverager
from .batches import iterate_batches, lone_last, num_batches
from .catalog import GROUPS
from .checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .devices import check_gpu, bf16_supported, facts, prepare
from .errors import DivergedError, TrainerError
from .losses import ClassificationTask, Task, penalized_weights, penalty, temperature_at
from .optim import create_optimizer
from .result import FitResult, Report
from .schedules import Schedule
from .settings import resolve_group

EVAL_BATCH = 512  # evaluation needs no gradients: larger batches, fewer Python steps


# ------------------------------------------------------------------ small pure pieces
def resolve_config(config: dict) -> dict:
    """Every group of the catalog, defaults filled in and checked; unknown groups fail."""
    unknown = sorted(set(config) - set(GROUPS))
    if unknown:
        raise TrainerError(f"config: unknown group {unknown[0]!r}; expected "
                           f"{', '.join(GROUPS)}")
    return {name: resolve_group(name, config.get(name)) for name in GROUPS}


def select_device(requested: str, cuda_available: bool | None = None) -> torch.device:
    """auto: CUDA when this process sees a GPU (a CPU-only trial must be started with no GPU
    visible, e.g. CUDA_VISIBLE_DEVICES=""), else the CPU. A GPU named in CUDA_VISIBLE_DEVICES
    that torch cannot use is an error (devices.gpu_problem), never a silent CPU run; only an
    explicit `cpu` trains on the CPU regardless."""
    if requested == "cpu":
        return torch.device("cpu")
    if cuda_available is None:
        check_gpu()
        cuda_available = torch.cuda.is_available()
    if requested == "cuda" and not cuda_available:
        raise TrainerError("train.device: cuda was requested but no CUDA device is visible to "
                           "this process; use auto or cpu")
    if requested in ("auto", "cuda"):
        return torch.device("cuda" if cuda_available else "cpu")
    raise TrainerError(f"train.device: expected auto, cpu or cuda, got {requested!r}")


@dataclass(frozen=True)
class Precision:
    autocast: torch.dtype | None  # None: plain fp32
    scaler: bool  # fp16 loss scaling


def precision_plan(precision: str, device: torch.device) -> Precision:
    if precision == "fp16" and device.type == "cuda":
        return Precision(torch.float16, True)
    if precision == "fp16":  # nothing to scale on a CPU: an error, never a silent fp32 run
        raise TrainerError("train.precision: fp16 needs a CUDA device, but this run trains on "
                           "the CPU; use fp32, or bf16 for mixed precision on a CPU")
    if precision == "bf16":
        return Precision(torch.bfloat16, False)
    return Precision(None, False)


def train_batches(split, batch_size: int) -> int:
    """The training batches of an epoch (a last batch of one sample dropped: lone_last)."""
    return num_batches(split, batch_size, drop_last=lone_last(split, batch_size))


def batch_size_at(data_cfg: dict, epoch: int) -> int:
    """Batch size of epoch `epoch` (0-based): doubled every `batch_size_double_every` epochs up
    to `batch_size_max` when both are set."""
    size, every, top = data_cfg["batch_size"], data_cfg["batch_size_double_every"], \
        data_cfg["batch_size_max"]
    if (every is None) != (top is None):
        raise TrainerError("data.batch_size_max and data.batch_size_double_every: the batch-size "
                           f"schedule needs both or neither, got {top} and {every}")
    if every is None:
        return size
    return max(size, min(top, size * 2 ** (epoch // every)))


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for every random stream, all from the one train.seed."""
    names = ("torch", "numpy", "python", "batches", "augment", "mixing")
    values = np.random.SeedSequence(seed).generate_state(len(names), dtype=np.uint64)
    return {n: int(v) % 2**63 for n, v in zip(names, values)}


def evaluate(model: nn.Module, split, device: torch.device,
             autocast_dtype: torch.dtype | None = None) -> tuple[float, float]:
    """(mean cross entropy, accuracy) of `model` in eval mode on a split."""
    model.eval()
    loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.inference_mode(), _autocast(device, autocast_dtype):
        for x, y in iterate_batches(split, EVAL_BATCH, shuffle=False, device=device):
            out = model(x)
            loss += F.cross_entropy(out.float(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
    n = max(1, len(split))
    return loss.item() / n, correct.item() / n


def augment_context(data) -> Context:
    """What the augmentation steps need to know about loaded data."""
    return Context(data.in_channels, data.num_classes, tuple(map(float, data.mean)),
                   tuple(map(float, data.std)), (data.in_channels, *data.image_size),
                   tuple(map(float, getattr(data, "value_range", (0.0, 1.0)))))


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


# ------------------------------------------------------------------------------ fit
def fit(config: dict, *, report: Report | None = None, checkpoint_dir: str | None = None,
        resume_from: str | None = None, cpus: int | None = None, task: Task | None = None,
        data=None, model: nn.Module | None = None) -> FitResult:
    """Train one model as `config` says (data.kfold > 1: k of them, see kfold.py). `data` (a
    datasets.Data; a sequence of them for k-fold) and `model` may be given to skip loading and
    building them (tests, benchmarks); `task` replaces the classification loss."""
    cfg = resolve_config(config)
    # Ray sets OMP_NUM_THREADS=1 in its workers: set the threads explicitly on every call.
    torch.set_num_threads(int(cfg["train"]["threads"] or cpus or os.cpu_count() or 1))
    device = select_device(cfg["train"]["device"])
    prepare(device)
    if cfg["data"]["kfold"] > 1:
        from .kfold import fit_kfold
        return fit_kfold(cfg, device, train_run, folds=data, report=report,
                         checkpoint_dir=checkpoint_dir, resume_from=resume_from, task=task,
                         model=model)
    if data is None:
        from .datasets import load_data
        data = load_data(cfg["data"], device=device)
    return train_run(cfg, data, device, report=report, task=task, model=model,
                     checkpoint_dir=checkpoint_dir, resume_from=resume_from)


def train_run(cfg: dict, data, device: torch.device, *, report: Report | None = None,
              task: Task | None = None, model: nn.Module | None = None,
              checkpoint_dir: str | None = None, resume_from: str | None = None) -> FitResult:
    """One seeded run of a resolved config on loaded data."""
    seeds = derive_seeds(cfg["train"]["seed"])
    torch.manual_seed(seeds["torch"])
    np.random.seed(seeds["numpy"] % 2**32)
    random.seed(seeds["python"])
    if model is None:
        from .models import build_model
        model = build_model(cfg["model"], in_channels=data.in_channels,
                            num_classes=data.num_classes, image_size=data.image_size)
    run = _Run(cfg, data, model.to(device), task, device, seeds)
    if resume_from is not None:
        run.restore(resume_from)
    return run.fit(report, None if checkpoint_dir is None else Path(checkpoint_dir))


class _Run:
    """The state of one training run and its epoch."""

    def __init__(self, cfg, data, model, task, device, seeds) -> None:
        tr, self.cfg, self.data, self.model, self.device = cfg["train"], cfg, data, model, device
        self.epochs, self.accum, self.clip = tr["epochs"], tr["grad_accum"], \
            cfg["regularization"]["grad_clip"]
        self.task = (task or ClassificationTask.from_config(cfg)).to(device)
        if tr["precision"] == "bf16" and not bf16_supported(device):
            raise TrainerError(f"train.precision: bf16 needs a GPU that supports it (Ampere or "
                               f"later), {torch.cuda.get_device_name(device)} does not; use "
                               "fp16 or fp32")
        self.precision = precision_plan(tr["precision"], device)
        if tr["channels_last"]:
            stored = getattr(data.train, "stored", None)  # in memory: its samples' tensor
            ndim = stored.ndim if stored is not None else 1 + len(data.input_shape)
            if ndim != 4:
                raise TrainerError("train.channels_last: needs images (N×C×H×W data), got "
                                   f"{ndim}-D inputs; set it to false")
            model.to(memory_format=torch.channels_last)
        # The training forward may be compiled; checkpoints and evaluation use the module.
        self.forward = torch.compile(model) if tr["compile"] else model
        self.notes: list[str] = []
        if tr["grad_checkpointing"]:
            if not hasattr(model, "set_grad_checkpointing"):
                raise TrainerError(f"train.grad_checkpointing: model {cfg['model']['name']!r} "
                                   "does not support gradient checkpointing; set it to false")
            model.set_grad_checkpointing(True)
        self.optimizer = create_optimizer(model, cfg["optimizer"])
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        from .models import count_parameters
        self.num_params = count_parameters(model)
        self.weights = penalized_weights(model)
        steps = [math.ceil(train_batches(data.train, batch_size_at(cfg["data"], e)) / self.accum)
                 for e in range(self.epochs)]
        self.schedule = Schedule(self.optimizer, cfg["scheduler"], steps)
        self.scaler = torch.amp.GradScaler(device.type) if self.precision.scaler else None
        self.averager = WeightAverager(model, tr["averaging"], epochs=self.epochs,
                                       swa_start=tr["swa_start"], ema_decay=tr["ema_decay"])
        self.augment = build_augment(cfg["augment"], augment_context(data))
        self.gens = {"batches": torch.Generator(data.train.device).manual_seed(seeds["batches"]),
                     "augment": torch.Generator(device).manual_seed(seeds["augment"]),
                     "mixing": torch.Generator().manual_seed(seeds["mixing"])}
        self.history: list[dict] = []
        self.best = {"epoch": 0, "val_accuracy": -1.0, "model": None}
        self.early = {"best": -math.inf, "bad_epochs": 0}

    # ---------------------------------------------------------------- checkpoints
    def state(self, epoch: int) -> dict:
        return {"config": self.cfg, "epoch": epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": None if self.scaler is None else self.scaler.state_dict(),
                "averaged": self.averager.state_dict(), "rng": rng_state(self.gens),
                "best": dict(self.best), "early_stopping": dict(self.early),
                "history": list(self.history)}

    def restore(self, path: str) -> None:
        """Continue the run of the checkpoint at `path`. When this config's optimizer or
        scheduler settings differ from the checkpoint's (a PBT mutation, a changed lr), the
        weights and the optimiser's moments are restored but its hyperparameters (lr,
        weight_decay, momentum, betas, ...) and the schedule's peak come from this config, the
        schedule keeping its position (steps and epochs taken): see Schedule.replay. The same
        holds when train.epochs changed: the schedule spans the new epochs from the position."""
        state = load_checkpoint(path)
        saved = state["config"] if isinstance(state["config"], dict) else {}
        # A longer horizon (`search run --extend`: train.epochs raised) rebuilds the schedule
        # over the new epochs too, replayed to the checkpoint's position.
        retuned = any(saved.get(g) != self.cfg[g] for g in ("optimizer", "scheduler")) or \
            (saved.get("train") or {}).get("epochs", self.epochs) != self.epochs
        # this config's hyperparameters, at the schedule's step 0 (put back after the load)
        hyper = [{k: v for k, v in g.items() if k != "params"}
                 for g in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.averager.load_state_dict(state["averaged"])
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0]
            raise TrainerError(f"checkpoint {path}: does not fit the model and optimiser of this "
                               f"config ({first}); resume with the config it was written with") \
                from None
        if retuned:
            for group, values in zip(self.optimizer.param_groups, hyper):
                group.update(values)
                for p in group["params"] if group.get("amsgrad") else ():  # turned on now
                    moments = self.optimizer.state.get(p)
                    if moments and "max_exp_avg_sq" not in moments:
                        moments["max_exp_avg_sq"] = moments["exp_avg_sq"].clone()
            self.schedule.replay(state["scheduler"], [h["val_loss"] for h in state["history"]])
        else:
            self.schedule.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self.gens)
        self.best, self.early = dict(state["best"]), dict(state["early_stopping"])
        self.history = list(state["history"])

    # ---------------------------------------------------------------------- epochs
    def fit(self, report: Report | None, checkpoint_dir: Path | None) -> FitResult:
        patience = self.cfg["train"]["early_stopping"]
        stop = patience is not None and self.early["bad_epochs"] >= patience
        while len(self.history) < self.epochs and not stop:
            epoch = len(self.history) + 1
            start = time.perf_counter()
            metrics = self.train_epoch(epoch)
            eval_model = self.averager.eval_model(self.model)
            metrics["val_loss"], metrics["val_accuracy"] = evaluate(
                eval_model, self.data.val, self.device, self.precision.autocast)
            self.schedule.step_epoch(metrics["val_loss"])  # plateau watches the val loss
            metrics["epoch_time"] = time.perf_counter() - start
            self.history.append(metrics)
            improved = metrics["val_accuracy"] > self.best["val_accuracy"]
            if improved:
                self.best = {"epoch": epoch, "val_accuracy": metrics["val_accuracy"],
                             "model": {k: v.detach().clone()
                                       for k, v in eval_model.state_dict().items()}}
            if metrics["val_accuracy"] > self.early["best"] + self.cfg["train"]["min_delta"]:
                self.early = {"best": metrics["val_accuracy"], "bad_epochs": 0}
            else:
                self.early["bad_epochs"] += 1
            if checkpoint_dir is not None:
                state = self.state(epoch)
                save_checkpoint(checkpoint_dir / "last.pt", state)
                if improved:
                    save_checkpoint(checkpoint_dir / "best.pt", state)
            stop = patience is not None and self.early["bad_epochs"] >= patience
            if report is not None and report(dict(metrics)) is True:
                stop = True
        return self.finish(stopped=len(self.history) < self.epochs, checkpoint_dir=checkpoint_dir)

    def train_epoch(self, epoch: int) -> dict:
        model, device, tr = self.model, self.device, self.cfg["train"]
        model.train()
        size = batch_size_at(self.cfg["data"], epoch - 1)
        batches = train_batches(self.data.train, size)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        norm_sum = torch.zeros((), device=device)
        norms = torch.zeros((), device=device)
        seen, left, group = 0, 0, 1
        temperature, lr = 1.0, self.schedule.lr
        start = time.perf_counter()
        for i, (x, y) in enumerate(iterate_batches(self.data.train, size, shuffle=True,
                                                   generator=self.gens["batches"],
                                                   device=device,
                                                   drop_last=lone_last(self.data.train, size))):
            if left == 0:  # a new optimiser step: its micro-batches (fewer at the very end)
                left = group = min(self.accum, batches - i)
            x, targets = self.augment(x, y, self.gens["augment"], self.gens["mixing"])
            lr = self.schedule.lr
            temperature = temperature_at(tr["temperature"], tr["temperature_schedule"], lr,
                                         self.schedule.lr_max)
            if tr["channels_last"]:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, self.precision.autocast):
                out = self.task(self.forward, x, targets, temperature=temperature)
            loss = out["loss"]
            extra = penalty(self.weights, self.cfg["regularization"]["l1"],
                            self.cfg["regularization"]["l2"])
            total = (loss if extra is None else loss + extra) / group
            (total if self.scaler is None else self.scaler.scale(total)).backward()
            loss_sum += loss.detach().float() * len(y)
            correct += (out["output"].detach().argmax(1) == y).sum()
            seen += len(y)
            left -= 1
            if left == 0:
                norm = self.optimizer_step()
                norm_sum += norm.nan_to_num(0.0, 0.0, 0.0)  # fp16 overflow steps are skipped
                norms += norm.isfinite()
        train_loss = loss_sum.item() / max(1, seen)  # the epoch's one synchronisation
        elapsed = time.perf_counter() - start
        if not math.isfinite(train_loss):
            raise DivergedError(epoch, train_loss)
        # SWA averages the epoch's final weights, then refreshes BatchNorm over the train split.
        self.averager.after_epoch(model, epoch, lambda: iterate_batches(
            self.data.train, size, shuffle=False, device=device,
            drop_last=lone_last(self.data.train, size)))
        metrics = {"epoch": epoch, "train_loss": train_loss,
                   "train_accuracy": correct.item() / max(1, seen), "lr": lr,
                   "grad_norm": (norm_sum / norms.clamp(min=1)).item(),
                   "samples_per_sec": seen / elapsed if elapsed > 0 else 0.0, "batch_size": size,
                   # known before training: a pruner ranking several objectives reads it
                   # from every epoch's report (search/tune/pareto_pruners.py)
                   "num_params": self.num_params}
        if tr["temperature"] != 1.0:
            metrics["temperature"] = temperature
        return metrics

    def optimizer_step(self) -> torch.Tensor:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        if self.clip is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.clip, norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step_batch()
        self.averager.after_step(self.model)
        return norm

    def finish(self, *, stopped: bool, checkpoint_dir: Path | None) -> FitResult:
        if self.best["model"] is not None:
            self.model.load_state_dict(self.best["model"])
        _, test_accuracy = evaluate(self.model, self.data.test, self.device,
                                    self.precision.autocast)
        best_pt = None if checkpoint_dir is None else checkpoint_dir / "best.pt"
        return FitResult(history=self.history, best_epoch=self.best["epoch"],
                         best_val_accuracy=self.best["val_accuracy"], test_accuracy=test_accuracy,
                         num_params=self.num_params,
                         stopped_early=stopped, notes=self.notes,
                         split=getattr(self.data, "split", ""), device=facts(self.device),
                         checkpoint=str(best_pt) if best_pt and best_pt.exists() else None)
