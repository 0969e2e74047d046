"""Benchmark: how fast each way of searching reaches a good model on the same work.

The space (default: the quickstart's: its parameters, budget, TPE start-up and ASHA settings)
searched by four arms, each a fresh process timed from its launch:
- `search`: `search run` (the real command line, `--no-stages`, tracking off unless
  `--tracking`);
- `tune_tpe`: a hand-written Ray Tune + OptunaSearch (TPE) + ASHA script, same settings;
- `optuna`: plain Optuna, TPE + its SuccessiveHalvingPruner, two worker processes on one study;
- `tune_random`: the Tune script with random search + ASHA.
(bench/_peers.py has the peers.) Every arm trains through the same function (`trainers.fit`
with a log of each epoch's validation accuracy and each finished trial's test accuracy), 1 CPU
per trial, 2 trials at once, on the same seeds (the space's `seed:` and `train.seed`), the arms'
order rotated from seed to seed.

Per arm: the median and range over seeds of the best validation accuracy at the end (the best
trial that ran to its end, as every arm's study ranks it) and of that trial's test accuracy,
and of the wall time and the epochs (all trials' together) until any epoch first reached the
target validation accuracy (`--target`, default: the highest multiple of 0.002 that every arm
reaches in most of its runs). Target: `search`'s median time to it <= 0.8 x the best peer's,
with a median best validation accuracy at most 0.2 points below the best peer's.

    python bench/bench_peers.py                           # the quickstart, 5 seeds: hours
    python bench/bench_peers.py --trials 10 --epochs 4 --subsample 1000 --seeds 0 1 2 3 4 \\
        --results /tmp/peers.jsonl                        # reduced; rows found are reused
    python bench/bench_peers.py --results /tmp/peers.jsonl --report-only --target 0.95
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _variants import ROOT, variant_yaml  # noqa: E402

ARMS = ("search", "tune_tpe", "optuna", "tune_random")
OURS = "search"
RAY_START_FAILED = "node timed out during startup"


def command(arm: str, space: Path, out: Path, cpus: int) -> list[str]:
    if arm == OURS:
        return [sys.executable, "-m", "search.cli", "run", str(space), "--plain", "--new",
                "--no-stages", "--output", str(out), "--fit", "bench._peers:fit",
                "--cpus", str(cpus)]
    return [sys.executable, str(ROOT / "bench" / "_peers.py"), arm, str(space), str(out)]


def run_arm(args, arm: str, seed: int, tmp: Path) -> dict:
    from spaces.yamlio import load_yaml

    data, _ = load_yaml(Path(args.space).read_text(), args.space)
    train = {**(data.get("train") or {}), "seed": seed}
    if args.epochs:
        train["epochs"] = args.epochs
    extra = {"tracking": {"enabled": True}} if args.tracking else {}
    text = variant_yaml(args.space, name=f"peers_{seed}", trials=args.trials,
                        epochs=args.epochs, seed=seed, train=train, **extra)
    folder = tmp / f"{arm}_{seed}"
    folder.mkdir()
    space, log = folder / "space.yaml", folder / "events.jsonl"
    space.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PEERS_LOG": str(log),
           "PEERS_TRAIN_SUBSAMPLE": str(args.subsample or 0)}
    for attempt in range(1, 4):  # Ray's 30 s start-up limit fails on an overloaded machine
        log.unlink(missing_ok=True)
        shutil.rmtree(folder / "out", ignore_errors=True)
        load = os.getloadavg()[0]
        t0 = time.time()
        proc = subprocess.run(command(arm, space, folder / "out", args.cpus), env=env,
                              cwd=folder, capture_output=True, text=True)
        wall = time.time() - t0
        if RAY_START_FAILED not in proc.stderr:
            break
    if proc.returncode != 0:
        print(f"{arm} seed {seed} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
              f"{proc.stderr[-3000:]}", file=sys.stderr)
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
    rows.sort(key=lambda r: r["t"])
    return {"arm": arm, "seed": seed, "trials": args.trials, "epochs_per_trial": args.epochs,
            "subsample": args.subsample, "tracking": args.tracking, "rc": proc.returncode,
            "attempts": attempt,
            "wall_s": round(wall, 1), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "events": [[round(r["t"] - t0, 2), r["val"]] for r in rows if "epoch" in r],
            "finals": [[round(r["t"] - t0, 2), r["best_val"], r["test"]]
                       for r in rows if r.get("final")]}


def best_at_end(row: dict) -> tuple[float, float] | None:
    """(best validation accuracy, its test accuracy) of the finished trials; ties: first."""
    if not row["finals"]:
        return None
    best = max(row["finals"], key=lambda f: (f[1], -f[0]))
    return best[1], best[2]


def to_target(row: dict, target: float) -> tuple[float, int]:
    """(seconds, epochs) until an epoch first reached `target`; (inf, inf) if none did."""
    for i, (t, val) in enumerate(row["events"], 1):
        if val >= target - 1e-9:
            return t, i
    return math.inf, math.inf


def auto_target(rows: list[dict], arms: list[str]) -> float:
    """The highest multiple of 0.002 that every arm reaches in more than half of its runs."""
    peaks = {a: [max((v for _, v in r["events"]), default=0.0) for r in rows if r["arm"] == a]
             for a in arms}
    best = 0.0
    for k in range(1, 501):
        v = round(k * 0.002, 3)
        if all(sum(p >= v - 1e-9 for p in ps) * 2 > len(ps) for ps in peaks.values() if ps):
            best = v
    return best


def spread(values: list[float], fmt: str) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not values:
        return "-"
    med = statistics.median(values)
    rng = f"{fmt.format(min(finite))}-{fmt.format(max(finite))}" if finite else "-"
    missed = len(values) - len(finite)
    return (f"{fmt.format(med) if math.isfinite(med) else 'not reached'} [{rng}"
            f"{f', {missed} not reached' if missed else ''}]")


def report(rows: list[dict], arms: list[str], target: float | None) -> str:
    arms = [a for a in arms if any(r["arm"] == a for r in rows)]
    target = target if target is not None else auto_target(rows, arms)
    lines = [f"target validation accuracy {target:.3f}; median [min-max] over seeds"]
    lines.append(f"{'arm':12s} {'runs':>4s}  {'best val':22s} {'its test':22s} "
                 f"{'time to target s':28s} {'epochs to target':24s} {'wall s':18s} epochs")
    med: dict[str, dict] = {}
    for arm in arms:
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["seed"])
        ends = [best_at_end(r) for r in mine]
        vals = [e[0] for e in ends if e]
        tests = [e[1] for e in ends if e]
        hits = [to_target(r, target) for r in mine]
        times, epochs = [h[0] for h in hits], [h[1] for h in hits]
        walls = [r["wall_s"] for r in mine]
        totals = [len(r["events"]) for r in mine]
        med[arm] = {"val": statistics.median(vals) if vals else math.nan,
                    "test": statistics.median(tests) if tests else math.nan,
                    "time": statistics.median(times), "epochs": statistics.median(epochs)}
        lines.append(f"{arm:12s} {len(mine):4d}  {spread(vals, '{:.4f}'):22s} "
                     f"{spread(tests, '{:.4f}'):22s} {spread(times, '{:.1f}'):28s} "
                     f"{spread(epochs, '{:.0f}'):24s} {spread(walls, '{:.0f}'):18s} "
                     f"{spread(totals, '{:.0f}')}")
        fails = [r["seed"] for r in mine if r["rc"] != 0]
        if fails:
            lines.append(f"  {arm}: exited non-zero at seeds {fails}")
    peers = [a for a in arms if a != OURS]
    if OURS in med and peers:
        fastest = min(peers, key=lambda a: med[a]["time"])
        best = max(peers, key=lambda a: -1.0 if math.isnan(med[a]["val"]) else med[a]["val"])
        ratio = med[OURS]["time"] / med[fastest]["time"]
        gap = (med[best]["val"] - med[OURS]["val"]) * 100
        test_gap = (max(med[a]["test"] for a in peers if not math.isnan(med[a]["test"]))
                    - med[OURS]["test"]) * 100
        lines.append(f"time to target: {OURS} {med[OURS]['time']:.1f} s vs the fastest peer "
                     f"({fastest}) {med[fastest]['time']:.1f} s = {ratio:.2f} x (target <= 0.8): "
                     f"{'met' if ratio <= 0.8 else 'MISSED'}")
        lines.append(f"final best val: {OURS} {med[OURS]['val']:.4f} vs the best peer ({best}) "
                     f"{med[best]['val']:.4f}: {gap:+.2f} points behind (negative: ahead; "
                     f"target <= 0.2): "
                     f"{'met' if gap <= 0.2 + 1e-9 else 'MISSED'}; test accuracy "
                     f"{test_gap:+.2f} points behind the best peer's median")
    return "\n".join(lines)


def read_rows(path: Path | None) -> list[dict]:
    if path is None or not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "spaces" / "quickstart.yaml"))
    ap.add_argument("--trials", type=int, help="default: the space's budget.trials")
    ap.add_argument("--epochs", type=int, help="default: the space's train.epochs")
    ap.add_argument("--subsample", type=int, default=0,
                    help="cut the training split to N images (0: all; the reduced workload)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of every arm (2 trials at once)")
    ap.add_argument("--tracking", action="store_true", help="search run with MLflow on")
    ap.add_argument("--target", type=float, help="target validation accuracy (default: auto)")
    ap.add_argument("--results", type=Path,
                    help="JSON-lines file: rows of the same workload found there are reused")
    ap.add_argument("--report-only", action="store_true", help="no runs: report --results")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from spaces import load_space

    base = load_space(args.space)
    args.trials = args.trials or base.budget.trials
    args.epochs = args.epochs or base.fixed["train"]["epochs"]
    size = (args.trials, args.epochs, args.subsample, args.tracking)
    rows = [r for r in read_rows(args.results)  # a failed run is run again
            if (r["trials"], r["epochs_per_trial"], r["subsample"], r["tracking"]) == size
            and r["rc"] == 0]
    done = {(r["arm"], r["seed"]) for r in rows}
    if not args.report_only:
        with tempfile.TemporaryDirectory() as tmp:
            for i, seed in enumerate(args.seeds):
                order = args.arms[i % len(args.arms):] + args.arms[:i % len(args.arms)]
                for arm in order:
                    if (arm, seed) in done:
                        continue
                    row = run_arm(args, arm, seed, Path(tmp))
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items()
                                      if k not in ("events", "finals")}), flush=True)
                    if args.results is not None:
                        with args.results.open("a") as f:
                            f.write(json.dumps(row) + "\n")
    print(f"machine: {os.uname().nodename} {os.cpu_count()} cores; {args.trials} trials x "
          f"{args.epochs} epochs, training subsample {args.subsample or 'none'}, "
          f"tracking {'on' if args.tracking else 'off'}")
    print(report([r for r in rows if r["seed"] in args.seeds], list(args.arms), args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
