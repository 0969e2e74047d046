"""Benchmark 1: orchestration overhead of `search run` on trials of known duration.

Runs the real command line (`python -m search.cli run SPACE --fit search.testing:known_work_fit`,
a fresh process: Ray start-up, the study, Tune, the searcher, the progress view, the summary)
on a space of N trials whose epochs each sleep a known time, and compares the wall time with
the ideal: total work / parallel slots. Target: wall <= 1.15 x ideal + 10 s of start-up.

    python bench/bench_overhead.py                     # 20 trials x 3 epochs x 1 s, 2 CPUs
    python bench/bench_overhead.py --trials 8 --seconds 0.5
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0, help="duration of one epoch")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray = trial slots")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        space, log = Path(tmp, "space.yaml"), Path(tmp, "fit.log")
        space.write_text(SPACE.format(trials=args.trials, epochs=args.epochs))
        env = {**os.environ, "SEARCH_KNOWN_WORK_SECONDS": str(args.seconds),
               "SEARCH_KNOWN_WORK_LOG": str(log), "PYTHONPATH": str(root)}
        cmd = [sys.executable, "-m", "search.cli", "run", str(space), "--plain",
               "--fit", "search.testing:known_work_fit", "--output", str(Path(tmp, "out")),
               "--cpus", str(args.cpus)]
        start = time.time()
        proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
        wall = time.time() - start
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            return proc.returncode
        starts = sorted(json.loads(line)["t"] for line in log.read_text().splitlines())
    slots = args.cpus
    ideal = args.trials * args.epochs * args.seconds / slots
    waves = math.ceil(args.trials / slots) * args.epochs * args.seconds  # same, whole waves
    first = starts[0] - start
    loop = wall - first
    budget = 1.15 * ideal + 10
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"trials {args.trials} x {args.epochs} epochs x {args.seconds:g} s on {slots} slots")
    print(f"ideal {ideal:.1f} s (whole waves {waves:.1f} s); wall {wall:.1f} s = "
          f"{wall / ideal:.2f} x ideal; time to first trial {first:.1f} s; from the first "
          f"trial to the end {loop:.1f} s = {loop / ideal:.2f} x ideal")
    print(f"target wall <= 1.15 x ideal + 10 s = {budget:.1f} s: "
          f"{'met' if wall <= budget else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
