"""Benchmark 3: the sampler pays. TPE against random search, the same budget, several seeds;
the median over seeds of the best validation accuracy must be at least as good with TPE.

    python bench/bench_sampler.py                                  # quickstart, 3 seeds
    python bench/bench_sampler.py --trials 12 --epochs 3 --seeds 0 1 2
    python bench/bench_sampler.py --fit search.testing:known_work_fit --trials 30 --seeds 0 1 2 3 4
      (the known-work landscape: no training, the accuracy is a known function of lr,
       optimiser and width; each epoch sleeps $SEARCH_KNOWN_WORK_SECONDS)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _variants import ROOT, search, variant  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "spaces" / "quickstart.yaml"))
    ap.add_argument("--trials", type=int, help="default: the space's budget.trials")
    ap.add_argument("--epochs", type=int, help="default: the space's train.epochs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fit", default="trainers:fit")
    args = ap.parse_args()
    from spaces import load_space

    base = load_space(args.space).sampler.as_dict()
    tpe = {k: v for k, v in base.items() if k != "seed"} if base["name"] == "tpe" \
        else {"name": "tpe"}
    best: dict[str, list[float]] = {"tpe": [], "random": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for label, section in (("tpe", tpe), ("random", {"name": "random"})):
                space = variant(args.space, name=f"bench_sampler_{label}_{seed}",
                                trials=args.trials, epochs=args.epochs,
                                sampler={**section, "seed": seed})
                row = search(space, Path(tmp, f"{label}{seed}"), args.fit)
                best[label].append(row["best_val"])
                print(label, seed, json.dumps(row), flush=True)
    med = {k: statistics.median(v) for k, v in best.items()}
    print(f"machine: {os.uname().nodename} {os.cpu_count()} cores")
    print(f"best val accuracy per seed {args.seeds}: tpe {best['tpe']}, random {best['random']}")
    print(f"median tpe {med['tpe']:.4f} vs random {med['random']:.4f} (target tpe >= random): "
          f"{'met' if med['tpe'] >= med['random'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
