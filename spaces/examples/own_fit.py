"""A training function of one's own, with its own hyperparameters (spaces/own_fit.yaml).

A small MLP on scikit-learn's bundled 8x8 digits (offline), trained with its own loop: the
search gives it `config["params"]` (hidden units, layers, lr, weight decay, optimiser, the input
noise it trains with) and `config["train"]` (epochs, seed); it reports each epoch's metrics
through `report`, writes `last.pt` to `checkpoint_dir` before reporting (so a paused or
restarted trial resumes from `resume_from`), and returns its history and test accuracy.
The contract is docs/own-training.md; copy this file and change the model, the data, the loop.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def digits_splits(seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train/val/test (60/20/20, stratified, fixed by `seed`) of sklearn's digits, scaled."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y,
                                              random_state=seed)
    x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=0.25, stratify=y_tr,
                                              random_state=seed)
    t = lambda a, b: (torch.from_numpy(a), torch.from_numpy(b).long())  # noqa: E731
    return {"train": t(x_tr, y_tr), "val": t(x_va, y_va), "test": t(x_te, y_te)}


def build(params: dict, features: int = 64, classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = []
    width = features
    for _ in range(int(params["layers"])):
        layers += [nn.Linear(width, int(params["hidden"])), nn.ReLU()]
        width = int(params["hidden"])
    return nn.Sequential(*layers, nn.Linear(width, classes))


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return (nn.functional.cross_entropy(logits, y).item(),
                (logits.argmax(1) == y).float().mean().item())


def fit(config: dict, *, report, checkpoint_dir: str | None = None,
        resume_from: str | None = None, cpus: int | None = None) -> dict:
    params, train = config["params"], config["train"]
    if cpus:
        torch.set_num_threads(cpus)
    torch.manual_seed(train["seed"])
    data = digits_splits(config["data"]["split_seed"])
    model = build(params)
    opt_class = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[params["optimizer"]]
    extra = {"momentum": 0.9} if params["optimizer"] == "sgd" else {}
    optimizer = opt_class(model.parameters(), lr=params["lr"],
                          weight_decay=params["weight_decay"], **extra)
    start, history, best = 0, [], {"val_accuracy": -1.0, "epoch": None, "model": None}
    if resume_from:  # our own last.pt: plain state_dicts and numbers (weights_only loads it)
        state = torch.load(resume_from, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = state["epoch"], state["history"]
        best = {"val_accuracy": state["best_val_accuracy"], "epoch": state["best_epoch"],
                "model": state["best_model"]}
    x, y = data["train"]
    generator = torch.Generator().manual_seed(train["seed"])
    if resume_from:
        generator.set_state(state["generator"])
    for epoch in range(start + 1, train["epochs"] + 1):
        began, total = time.perf_counter(), 0.0
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), params["batch_size"]):
            idx = order[i:i + params["batch_size"]]
            inputs = x[idx] + params["noise"] * torch.randn(len(idx), x.shape[1],
                                                            generator=generator)
            loss = nn.functional.cross_entropy(model(inputs), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        val_loss, val_accuracy = _accuracy(model, *data["val"])
        metrics = {"epoch": epoch, "train_loss": total / len(x), "val_loss": val_loss,
                   "val_accuracy": val_accuracy, "epoch_time": time.perf_counter() - began}
        history.append(metrics)
        if val_accuracy > best["val_accuracy"]:
            best = {"val_accuracy": val_accuracy, "epoch": epoch,
                    "model": {k: v.clone() for k, v in model.state_dict().items()}}
        if checkpoint_dir:  # before report: a pruned or paused trial keeps this epoch
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "epoch": epoch, "history": history, "best_model": best["model"],
                        "best_epoch": best["epoch"],
                        "best_val_accuracy": best["val_accuracy"],
                        "generator": generator.get_state()},
                       Path(checkpoint_dir) / "last.pt")
        if report(metrics):
            break
    model.load_state_dict(best["model"])
    _, test_accuracy = _accuracy(model, *data["test"])
    return {"history": history, "best_epoch": best["epoch"],
            "best_val_accuracy": best["val_accuracy"], "test_accuracy": test_accuracy,
            "num_params": sum(p.numel() for p in model.parameters())}
