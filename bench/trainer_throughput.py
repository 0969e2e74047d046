"""Trainer throughput: `trainers.fit` against a hand-written minimal PyTorch loop, and the
quality of the default config.

    .venv/bin/python bench/trainer_throughput.py            # --rounds 6 --epochs 3 --threads 2

Throughput: mnist5k, the default CNN (same class, same initial weights), the same normalised
data tensors, AdamW with the same lr/weight decay, batch size 64, the same threads. fit runs a
config doing the same work per batch as the minimal loop (no augmentation, no label smoothing, a
constant lr); a third row runs fit's full default config (shift augmentation, label smoothing,
one-cycle lr) for information. Runs alternate (fit, hand, fit-default, fit, hand, ...) in one
process; samples/s is the median over the training epochs of a method (validation excluded in
both); peak RSS is sampled from /proc/self/statm during each run. The machine is shared: the CPU
time other processes used during each run is measured (/proc/stat minus this process), and a
round in which they used more than --max-foreign cores is left out of the medians (all rounds
count, with a warning, if none is clean).

Quality: the default config, full length (12 epochs), must reach >= 98% test accuracy in
<= 15 epochs; the wall time covers the whole fit (data already loaded).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from trainers import build_model, fit, load_data  # noqa: E402
from trainers.catalog import defaults  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


class ForeignLoad:
    """CPU cores that other processes kept busy while the block ran."""

    def __enter__(self):
        self._start = (_busy_ticks(), _own_ticks(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = _busy_ticks(), _own_ticks(), time.perf_counter()
        ticks = (busy - self._start[0]) - (own - self._start[1])
        self.cores = max(0.0, ticks / os.sysconf("SC_CLK_TCK") / (wall - self._start[2]))


def _busy_ticks() -> int:
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal


def _own_ticks() -> int:
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime of all threads


class PeakRSS:
    """Highest resident set size seen while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.peak, self._stop = _rss(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def hand_loop(model, x, y, *, epochs, batch_size, lr, weight_decay, seed) -> list[float]:
    """The minimal loop: shuffle, forward, cross entropy, backward, AdamW step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    rates = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss.item()
        rates.append(len(y) / (time.perf_counter() - start))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-foreign", type=float, default=0.15,
                    help="leave out rounds in which other processes used more CPU cores")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {args.threads}, "
          f"load average before {os.getloadavg()}")

    base = defaults()
    data = load_data(base["data"], device="cpu")
    torch.manual_seed(0)
    model0 = build_model(base["model"], in_channels=data.in_channels,
                         num_classes=data.num_classes, image_size=data.image_size)
    opt = base["optimizer"]
    train = {"epochs": args.epochs, "threads": args.threads, "device": "cpu"}
    same_work = {"train": train, "augment": {"shift": 0}, "scheduler": {"name": "none"},
                 "regularization": {"label_smoothing": 0.0}}
    runs = {
        "fit (same work)": lambda: [m["samples_per_sec"] for m in fit(
            same_work, data=data, model=copy.deepcopy(model0)).history],
        "hand-written loop": lambda: hand_loop(
            copy.deepcopy(model0), data.train.x, data.train.y, epochs=args.epochs,
            batch_size=base["data"]["batch_size"], lr=opt["lr"],
            weight_decay=opt["weight_decay"], seed=0),
        "fit (default config)": lambda: [m["samples_per_sec"] for m in fit(
            {"train": train}, data=data, model=copy.deepcopy(model0)).history],
    }
    rounds = []  # per round: {name: (epoch rates, peak RSS, foreign cores)}
    for r in range(args.rounds):
        rounds.append({})
        for name, run in runs.items():
            with PeakRSS() as rss, ForeignLoad() as other:
                epoch_rates = run()
            rounds[-1][name] = (epoch_rates, rss.peak, other.cores)
            print(f"round {r + 1} {name:<22} " + " ".join(f"{v:7.0f}" for v in epoch_rates)
                  + f"   other processes: {other.cores:.2f} cores")
    clean = [rd for rd in rounds if max(v[2] for v in rd.values()) <= args.max_foreign]
    if not clean:
        print(f"WARNING: no round ran with other processes below {args.max_foreign} cores; "
              "the figures below use every round and are unreliable")
    used = clean or rounds
    hand = statistics.median(v for rd in used for v in rd["hand-written loop"][0])
    print(f"\n{len(used)} of {len(rounds)} rounds used\n\n| run | samples/s (median of "
          f"{len(used) * args.epochs} epochs) | ratio to the hand-written loop | peak RSS |\n"
          "|---|---|---|---|")
    for name in runs:
        med = statistics.median(v for rd in used for v in rd[name][0])
        peak = max(rd[name][1] for rd in used)
        print(f"| {name} | {med:,.0f} | {med / hand:.3f} | {peak / 2**20:,.0f} MiB |")

    if not args.skip_quality:
        torch.manual_seed(0)
        start = time.perf_counter()
        result = fit({"train": {"threads": args.threads, "device": "cpu"}}, data=data)
        wall = time.perf_counter() - start
        print(f"\nquality: default config, {len(result.history)} epochs: test accuracy "
              f"{result.test_accuracy:.4f} (best val {result.best_val_accuracy:.4f} at epoch "
              f"{result.best_epoch}), wall time {wall:.1f} s, "
              f"{'PASS' if result.test_accuracy >= 0.98 and len(result.history) <= 15 else 'FAIL'}"
              " (target >= 98% in <= 15 epochs)")
    print(f"load average after {os.getloadavg()}; process peak RSS "
          f"{_maxrss_mib():,.0f} MiB")


def _maxrss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
