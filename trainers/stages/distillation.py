"""The distill stage: a smaller student learns from the previous model (the teacher).

    loss = (1 - alpha) · CE(student, labels) + alpha · distance(student logits, teacher logits)

CE is the trainer's own classification loss (label smoothing, mixup/cutmix soft targets and the
training temperature of the config apply to it). The distances, on logits z_s, z_t (B, n):
- kl: KL(softmax(z_t/T) ‖ softmax(z_s/T)) · T², batch mean (Hinton et al.; T² keeps the
  gradient scale independent of T);
- mse: mean over batch and classes of (z_s - z_t)², on the raw logits (T is not used);
- wasserstein: W1 between p_s = softmax(z_s/T) and p_t = softmax(z_t/T). With no ground metric
  over the classes given, the classes are points 0..n-1 on a line (distance |i - j|), where W1
  has the closed form Σ_k |CDF_s(k) - CDF_t(k)|; batch mean. On unordered classes this
  penalises moving mass between far-apart indices more; it is zero iff p_s = p_t.
The student trains `epochs` epochs at the previous lr × lr_scale with the previous config's
optimiser, scheduler, augmentation and regularisation, seeded by the stage's `seed` (default:
the config's train.seed). The teacher stays frozen in eval mode; an int8 teacher runs on the CPU.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import TrainerError
from ..loop import derive_seeds, fit, resolve_config
from ..losses import ClassificationTask, Task
from .finetuning import load_stage_data
from .model import StageModel, build_float, dims_of


def kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
                    reduction="batchmean", log_target=True) * (t * t)


def mse(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    return F.mse_loss(student, teacher)


def wasserstein(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    cdf_s = F.softmax(student / temperature, dim=-1).cumsum(-1)
    cdf_t = F.softmax(teacher / temperature, dim=-1).cumsum(-1)
    return (cdf_s - cdf_t).abs().sum(-1).mean()


DISTANCES: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {
    "kl": kl, "mse": mse, "wasserstein": wasserstein}


class DistillationTask(Task):
    """(1 - alpha) · the classification loss + alpha · distance to the teacher's logits."""

    def __init__(self, teacher: nn.Module, *, alpha: float, temperature: float, distance: str,
                 ce: ClassificationTask | None = None, teacher_on_cpu: bool = False) -> None:
        if distance not in DISTANCES:
            raise TrainerError(f"distill.distance: expected one of {', '.join(DISTANCES)}, "
                               f"got {distance!r}")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.distance = DISTANCES[distance]
        self.ce = ce or ClassificationTask()
        self.teacher_on_cpu = teacher_on_cpu  # int8 kernels exist on the CPU only

    def to(self, device: torch.device) -> "DistillationTask":
        if not self.teacher_on_cpu:
            self.teacher.to(device)
        return self

    def teacher_logits(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            if self.teacher_on_cpu:
                with torch.autocast(x.device.type, enabled=False):
                    return self.teacher(x.float().cpu()).to(x.device)
            return self.teacher(x)

    def __call__(self, model, x, y, *, temperature=1.0):
        out = self.ce(model, x, y, temperature=temperature)
        d = self.distance(out["output"].float(), self.teacher_logits(x).float(),
                          self.temperature)
        loss = (1.0 - self.alpha) * out["loss"] + self.alpha * d
        return {"loss": loss, "output": out["output"]}


def distill_config(config: dict, stage: dict, base_lr: float | None = None) -> dict:
    """The teacher's config with the student's model, the stage's augment settings, epochs and
    seed, and lr = base lr (default: the config's) × lr_scale."""
    cfg = copy.deepcopy(config)
    cfg["model"] = dict(stage["student"])
    cfg["augment"].update(stage.get("augment") or {})
    cfg["data"]["kfold"] = 0
    cfg["train"]["epochs"] = stage["epochs"]
    lr = cfg["optimizer"]["lr"] if base_lr is None else base_lr
    cfg["optimizer"]["lr"] = lr * stage["lr_scale"]
    if stage.get("seed") is not None:
        cfg["train"]["seed"] = stage["seed"]
    try:
        return resolve_config(cfg)
    except TrainerError as err:
        raise TrainerError(f"distill: {err}") from None


def distill(stage: dict, previous: StageModel, *, data=None, cpus: int | None = None,
            report=None) -> StageModel:
    cfg = distill_config(previous.config, stage, previous.base_lr)
    if data is None:
        data = load_stage_data(cfg)
    dims = dims_of(cfg, data)
    torch.manual_seed(derive_seeds(cfg["train"]["seed"])["torch"])  # as fit seeds its own
    student = build_float(cfg, dims)
    teacher = copy.deepcopy(previous.model)  # the previous stage's model stays where it was
    task = DistillationTask(teacher, alpha=stage["alpha"], temperature=stage["temperature"],
                            distance=stage["distance"], ce=ClassificationTask.from_config(cfg),
                            teacher_on_cpu=previous.kind.startswith("int8"))
    result = fit(cfg, data=data, model=student, task=task, report=report, cpus=cpus)
    meta = {"dims": dims, "steps": [], "notes": [], "best_epoch": result.best_epoch,
            "val_accuracy": result.best_val_accuracy, "epochs_trained": len(result.history),
            "teacher": previous.kind}
    return StageModel(cfg, student.cpu().eval(), "float32", meta)
