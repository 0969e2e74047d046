"""Benchmark 1: orchestration overhead of `search run` on trials of known duration.

Runs the real command line (`python -m search.cli run SPACE --fit search.testing:known_work_fit`,
a fresh process: Ray start-up, the study, Tune, the searcher, the progress view, the summary)
on a space of N trials whose epochs each sleep a known time, and compares the wall time with
the ideal: total work / parallel slots. Target: wall <= 1.15 x ideal + 10 s of start-up.
Side by side, in ABBA order, the same work driven by the Ray Tune + OptunaSearch script a user
would write by hand (bench/_tune_baseline.py): this VM's speed varies by 2x through a day, so
the ratio to that baseline is the figure that says what our orchestration costs.

    python bench/bench_overhead.py                     # 20 trials x 3 epochs x 1 s, 2 CPUs
    python bench/bench_overhead.py --trials 8 --seconds 0.5
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPACE = """
name: bench_overhead
data: {{dataset: digits}}
model: {{name: mlp}}
train: {{epochs: {epochs}}}
space:
  optimizer:
    lr: {{low: 1.0e-4, high: 1.0e-1, log: true}}
  model:
    width: {{choices: [16, 32, 64]}}
objective: {{metric: val_accuracy}}
budget: {{trials: {trials}}}
sampler: {{name: tpe}}
pruner: {{name: none}}
resources: {{cpu: 1}}
tracking: {{enabled: false}}
"""


def timed(cmd: list[str], env: dict, cwd: str, log: Path) -> tuple[float, float]:
    """(wall, time to the first trial's start) of one fresh process."""
    log.unlink(missing_ok=True)
    start = time.time()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd[1]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    starts = sorted(json.loads(line)["t"] for line in log.read_text().splitlines())
    return wall, starts[0] - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0, help="duration of one epoch")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray = trial slots")
    ap.add_argument("--repeats", type=int, default=2,
                    help="pairs of runs, ours and the baseline's, in ABBA order")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    slots = args.cpus
    ideal = args.trials * args.epochs * args.seconds / slots
    budget = 1.15 * ideal + 10
    rows: dict[str, list[tuple[float, float]]] = {"search run": [], "Tune + OptunaSearch": []}
    with tempfile.TemporaryDirectory() as tmp:
        space, log = Path(tmp, "space.yaml"), Path(tmp, "fit.log")
        space.write_text(SPACE.format(trials=args.trials, epochs=args.epochs))
        env = {**os.environ, "SEARCH_KNOWN_WORK_SECONDS": str(args.seconds),
               "SEARCH_KNOWN_WORK_LOG": str(log), "PYTHONPATH": str(root)}
        ours = [sys.executable, "-m", "search.cli", "run", str(space), "--plain",
                "--fit", "search.testing:known_work_fit", "--cpus", str(args.cpus)]
        base = [sys.executable, str(root / "bench" / "_tune_baseline.py"), str(args.trials),
                str(args.epochs), str(args.seconds), str(args.cpus), str(log)]
        order = [0, 1, 1, 0] * args.repeats
        for i, which in enumerate(order[:2 * args.repeats]):
            out = str(Path(tmp, f"out{i}"))
            Path(out).mkdir()
            if which == 0:
                rows["search run"].append(timed(ours + ["--output", out], env, tmp, log))
            else:
                rows["Tune + OptunaSearch"].append(timed(base + [out], env, tmp, log))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"trials {args.trials} x {args.epochs} epochs x {args.seconds:g} s on {slots} slots; "
          f"ideal {ideal:.1f} s")
    for name, runs in rows.items():
        for wall, first in runs:
            loop = wall - first
            print(f"{name:20s} wall {wall:5.1f} s = {wall / ideal:.2f} x ideal; time to first "
                  f"trial {first:4.1f} s; first trial to the end {loop:5.1f} s = "
                  f"{loop / ideal:.2f} x ideal")
    med = {name: (statistics.median(w for w, _ in runs), statistics.median(f for _, f in runs))
           for name, runs in rows.items()}
    (ours_wall, ours_first), (base_wall, base_first) = med["search run"], med["Tune + OptunaSearch"]
    print(f"medians: search run {ours_wall:.1f} s (first trial {ours_first:.1f} s), "
          f"baseline {base_wall:.1f} s (first trial {base_first:.1f} s): search run / baseline "
          f"= {ours_wall / base_wall:.2f}, start-up {ours_first - base_first:+.1f} s, loop "
          f"{(ours_wall - ours_first) / (base_wall - base_first):.2f} x the baseline's")
    print(f"target wall <= 1.15 x ideal + 10 s = {budget:.1f} s: "
          f"{'met' if ours_wall <= budget else 'MISSED'} (median of {len(rows['search run'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
