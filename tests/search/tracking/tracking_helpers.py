"""Real pieces for the tracking tests: a tiny digits classifier trained for real (scikit-learn's
8x8 digits, no download), the Tune function trainable around it, the registry loader for its
checkpoints, and an `mlflow server` process that tests stop and start.

The trainable follows search/tune/trainable.py's protocol: one report per epoch with a checkpoint
folder (best.pt, last.pt), the last epoch held back and sent with `test_accuracy`,
`trial_finished` and `final_<metric>`.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
from torch import nn

N_TEST, N_VAL = 360, 360


def digits_splits(seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """train/val/test of sklearn's digits, standardised by the training split."""
    import numpy as np
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.RandomState(seed).permutation(len(y))
    x = torch.tensor(x[order], dtype=torch.float32)
    y = torch.tensor(y[order], dtype=torch.int64)
    test, val, train = slice(0, N_TEST), slice(N_TEST, N_TEST + N_VAL), slice(N_TEST + N_VAL,
                                                                                 None)
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}


class TinyNet(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))


def accuracy(model: nn.Module, split: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        return float((model(split[0]).argmax(1) == split[1]).float().mean())


def load_digits_model(path: str):
    """The registry loader for TinyNet checkpoints: (model, input example, metadata)."""
    state = torch.load(path, weights_only=True)
    model = TinyNet(int(state["config"]["model"]["width"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, digits_splits()["test"][0][:2], {"dataset": "sklearn digits"}


def make_trainable(space, *, explode: dict | None = None, epoch_seconds: float = 0.0):
    """A Tune trainable training TinyNet with the trial's params; a trial whose params include
    all of `explode` raises in epoch 2 (after reporting epoch 1)."""

    def digits_trial(config: dict) -> None:
        from ray import tune

        torch.set_num_threads(1)
        cfg = space.config_from_params(config["params"]) if "params" in config else config
        epochs, opt_cfg = int(cfg["train"]["epochs"]), cfg["optimizer"]
        params = config.get("params", {})
        boom = explode is not None and all(params.get(k) == v for k, v in explode.items())
        data = digits_splits()
        torch.manual_seed(int(cfg["train"].get("seed", 0)))
        model = TinyNet(int(cfg["model"]["width"]))
        if opt_cfg["name"] == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=opt_cfg["lr"],
                                  momentum=opt_cfg.get("momentum", 0.0))
        else:
            opt = torch.optim.AdamW(model.parameters(), lr=opt_cfg["lr"])
        start, best = 0, {"val_accuracy": -1.0, "epoch": 0, "model": None}
        work = Path(tempfile.mkdtemp(prefix="digits-ckpt-"))
        resumed = tune.get_checkpoint()
        if resumed is not None:
            with resumed.as_directory() as folder:
                last = torch.load(Path(folder) / "last.pt", weights_only=True)
            model.load_state_dict(last["model"])
            opt.load_state_dict(last["optimizer"])
            start, best = last["epoch"], last["best"]
        loss_fn, gen = nn.CrossEntropyLoss(), torch.Generator().manual_seed(start)
        metrics: dict = {}
        for epoch in range(start + 1, epochs + 1):
            if boom and epoch == 2:
                raise RuntimeError("exploding on purpose at epoch 2")
            began = time.perf_counter()
            x, y = data["train"]
            model.train()
            total, norm = 0.0, 0.0
            for idx in torch.randperm(len(y), generator=gen).split(64):
                opt.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                norm = float(nn.utils.clip_grad_norm_(model.parameters(), 1e9))
                opt.step()
                total += float(loss) * len(idx)
            model.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(model(data["val"][0]), data["val"][1]))
            val_acc = accuracy(model, data["val"])
            if val_acc > best["val_accuracy"]:
                best = {"val_accuracy": val_acc, "epoch": epoch,
                        "model": {k: v.clone() for k, v in model.state_dict().items()}}
            time.sleep(epoch_seconds)
            took = time.perf_counter() - began
            metrics = {"epoch": epoch, "train_loss": total / len(y), "val_loss": val_loss,
                       "val_accuracy": val_acc, "lr": opt_cfg["lr"], "grad_norm": norm,
                       "epoch_time": took, "samples_per_sec": len(y) / took}
            torch.save({"config": cfg, "model": best["model"], "epoch": best["epoch"]},
                       work / "best.pt")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "epoch": epoch, "best": best}, work / "last.pt")
            if epoch < epochs:
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(work)))
        model.load_state_dict(best["model"])
        final = {"test_accuracy": accuracy(model, data["test"]), "trial_finished": True,
                 "final_val_accuracy": best["val_accuracy"], "selected_epoch": best["epoch"]}
        tune.report({**metrics, **final}, checkpoint=tune.Checkpoint.from_directory(str(work)))

    return digits_trial


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` (SQLite store, proxied artifacts) on a loopback port, in its own
    process group so that stopping it stops its workers too."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root, self.port = Path(root), port or free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        log = open(self.root / f"server-{self.starts}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
             f"sqlite:///{self.root / 'server.db'}", "--artifacts-destination",
             str(self.root / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited; see {log.name}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"mlflow server did not start in {timeout} s; see {log.name}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        # the port must be free before the next start on the same port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)


class Branchy(nn.Module):
    """Data-dependent control flow: torch.export cannot trace it (the registry falls back to
    pickle serialisation)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if float(x.sum()) > 0:
            return self.linear(x)
        return -self.linear(x)


def load_branchy(path: str):
    """A registry loader for Branchy (no checkpoint: the model is made fresh)."""
    torch.manual_seed(0)
    return Branchy().eval(), torch.randn(2, 64), {"dataset": "random"}
