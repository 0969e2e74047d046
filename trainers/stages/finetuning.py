"""The finetune stage: train on from the previous model, with a smaller lr.

- The previous config, with `epochs` epochs, lr = its base lr × `lr_scale` (`StageModel.base_lr`:
  the last full training's, not an earlier finetune's scaled one), and the stage's `data`
  settings over its own (another split, another dataset: a new class count gets a fresh head).
  The configured scheduler runs over the new epoch count, exactly as in a training run of that
  length (one-cycle: a short ramp to lr × lr_scale and the anneal down; no warm restart at the
  search's peak lr). Training goes through trainers.fit with the model given, so every trainer
  option (augmentation, smoothing, averaging, early stopping, precision) applies; fit returns
  the weights of the epoch with the best validation accuracy.
- mode `transfer`: the backbone (or its first `freeze` groups, see anatomy.py) is frozen: no
  gradients, and eval mode pinned so its BatchNorm statistics stay as they were.
- `knn: k > 0`: afterwards the head is replaced by a k-nearest-neighbour classifier over the
  frozen features of the training split (the classifier's input, L2-normalised; cosine
  similarity; majority vote of the k nearest, ties going to the class whose voters are more
  similar). In transfer mode with the whole backbone frozen, the features cannot change, so no
  epochs are trained at all.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..batches import iterate_batches
from ..catalog import GROUPS
from ..errors import TrainerError
from ..loop import EVAL_BATCH, fit, resolve_config
from .anatomy import anatomy, frozen, frozen_groups, new_head, set_module
from .model import KINDS, StageModel, dims_of


class KNNClassifier(nn.Module):
    """`features` (the model with its head replaced by the identity) followed by a kNN vote
    over a bank of L2-normalised training features. Outputs vote fractions (B, classes)."""

    def __init__(self, features: nn.Module, bank: Tensor, labels: Tensor, k: int,
                 num_classes: int) -> None:
        super().__init__()
        self.features, self.k, self.num_classes = features, int(k), int(num_classes)
        self.register_buffer("bank", bank)
        self.register_buffer("labels", labels)

    def embed(self, x: Tensor) -> Tensor:
        return F.normalize(self.features(x).flatten(1).float(), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.embed(x)
        sim = f @ self.bank.to(f.dtype).T  # the bank is half after a float16 stage
        top, idx = sim.topk(min(self.k, len(self.labels)), dim=1)
        # one vote each; 1e-3 × similarity only breaks ties (< 1 for k < 500)
        votes = torch.zeros(len(x), self.num_classes, device=x.device)
        votes.scatter_add_(1, self.labels[idx], 1.0 + 1e-3 * top)
        return votes / self.k


def knn_head(model: nn.Module, config: dict, data, k: int, what: str) -> KNNClassifier:
    head = anatomy(config, what).head
    features = copy.deepcopy(model).cpu().eval()
    set_module(features, head, nn.Identity())
    knn = KNNClassifier(features, torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), k,
                        data.num_classes)
    chunks, labels = [], []
    with torch.inference_mode():
        for x, y in iterate_batches(data.train, EVAL_BATCH, shuffle=False, device="cpu"):
            chunks.append(knn.embed(x))
            labels.append(y)
    knn.bank, knn.labels = torch.cat(chunks), torch.cat(labels)
    return knn.eval()


def rebuild_knn(model: nn.Module, step: dict, dims: dict) -> nn.Module:
    """The empty kNN structure of a saved stage (bank filled by its state_dict)."""
    set_module(model, step["head"], nn.Identity())
    n, d = step["bank"]
    return KNNClassifier(model, torch.zeros(n, d), torch.zeros(n, dtype=torch.long), step["k"],
                         dims["num_classes"])


def finetune_config(config: dict, stage: dict, base_lr: float | None = None) -> dict:
    """The previous config with the stage's epochs, lr = base lr (default: the config's) ×
    lr_scale, and data settings."""
    cfg = copy.deepcopy(config)
    if base_lr is not None:
        cfg["optimizer"]["lr"] = base_lr
    over = stage.get("data") or {}
    if over:
        base = cfg["data"]
        if over.get("dataset", base["dataset"]) != base["dataset"]:  # drop the old one's keys
            base = {k: v for k, v in base.items() if k in GROUPS["data"].options}
        cfg["data"] = {**base, **over}
    cfg["data"]["kfold"] = 0  # a stage trains one model
    cfg["train"]["epochs"] = stage["epochs"]
    cfg["optimizer"]["lr"] = cfg["optimizer"]["lr"] * stage["lr_scale"]
    try:
        return resolve_config(cfg)
    except TrainerError as err:
        raise TrainerError(f"finetune: {err}") from None


def load_stage_data(cfg: dict):
    """The config's data, on the device the config trains on."""
    from ..datasets import load_data
    from ..loop import select_device
    return load_data(cfg["data"], device=select_device(cfg["train"]["device"]))


def _check_input(model: nn.Module, data, dims: dict, new: dict) -> None:
    x, _ = next(iterate_batches(data.train, 2, shuffle=False, device="cpu"))
    try:
        with torch.inference_mode():
            model.eval()(x)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise TrainerError(
            f"finetune data: the model takes samples of {_shape(dims)}, the finetune data has "
            f"{_shape(new)} ({first}); set data.resize or use a model with a global pooling "
            "head") from None


def _shape(dims: dict) -> str:
    return "×".join(str(int(d)) for d in (dims["in_channels"], *dims["image_size"]))


def finetune(stage: dict, previous: StageModel, *, data=None, cpus: int | None = None,
             report=None) -> StageModel:
    if previous.kind != "float32" or previous.meta.get("steps"):
        raise TrainerError(f"finetune: the previous stage's model is {_describe(previous)}, "
                           "which cannot be trained; put finetune before quantize or a kNN "
                           "finetune")
    cfg = finetune_config(previous.config, stage, previous.base_lr)
    if stage.get("data") or data is None:
        data = load_stage_data(cfg)
    dims = dims_of(cfg, data)
    model = copy.deepcopy(previous.model)
    meta = {"dims": dims, "steps": [], "notes": list(previous.meta.get("notes", [])),
            "base_lr": previous.base_lr}
    if dims["num_classes"] != previous.dims["num_classes"]:
        new_head(model, anatomy(cfg, "finetune data").head, dims["num_classes"])
        meta["notes"].append(f"finetune: new head for {dims['num_classes']} classes")
    _check_input(model, data, previous.dims, dims)
    transfer = stage.get("mode") == "transfer"
    frozen_modules = frozen_groups(model, cfg, stage.get("freeze"), "finetune transfer") \
        if transfer else []
    knn = int(stage.get("knn") or 0)
    meta["epochs_trained"] = 0
    if not (knn and transfer and stage.get("freeze") is None):
        with frozen(frozen_modules):
            meta["trainable_params"] = sum(p.numel() for p in model.parameters()
                                           if p.requires_grad)
            result = fit(cfg, data=data, model=model, report=report, cpus=cpus)
        meta.update(best_epoch=result.best_epoch, val_accuracy=result.best_val_accuracy,
                    epochs_trained=len(result.history))
    model = model.cpu().eval()
    if knn:
        head = anatomy(cfg, "finetune knn").head
        model = knn_head(model, cfg, data, knn, "finetune knn")
        meta["steps"].append({"op": "knn", "k": knn, "head": head,
                              "bank": list(model.bank.shape)})
    return StageModel(cfg, model, "float32", meta)


def _describe(sm: StageModel) -> str:
    heads = [f"a {s['op']} head" for s in sm.meta.get("steps", []) if s["op"] not in KINDS]
    return sm.kind + (f" with {', '.join(heads)}" if heads else "")
