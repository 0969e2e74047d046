"""Benchmark 2: pruning pays. The quickstart space searched twice with the same number of
trials and the same sampler seed: ASHA (the space's pruner) against no pruning.
Target: ASHA trains <= 40% of the epochs for a best validation accuracy within 0.3 points.

    python bench/bench_pruning.py                       # the quickstart's own sizes
    python bench/bench_pruning.py --trials 8 --epochs 4 # reduced
"""
from __future__ import annotations

import argparse
import json
import os
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
    ap.add_argument("--grace", type=int, help="ASHA grace period (default: the space's)")
    ap.add_argument("--reduction-factor", type=int, help="ASHA reduction factor (default: "
                    "the space's)")
    ap.add_argument("--fit", default="trainers:fit")
    args = ap.parse_args()
    from spaces import load_space

    pruner = load_space(args.space).pruner
    if pruner["name"] != "asha":
        pruner = {"name": "asha", "grace_period": 1, "reduction_factor": 3}
    pruner = {k: v for k, v in pruner.items() if k in ("name", "grace_period",
                                                       "reduction_factor", "brackets")}
    if args.grace:
        pruner["grace_period"] = args.grace
    if args.reduction_factor:
        pruner["reduction_factor"] = args.reduction_factor
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, section in (("asha", pruner), ("none", {"name": "none"})):
            space = variant(args.space, name=f"bench_pruning_{label}", trials=args.trials,
                            epochs=args.epochs, pruner=section)
            rows[label] = search(space, Path(tmp, label), args.fit)
            print(label, json.dumps(rows[label]), flush=True)
    a, n = rows["asha"], rows["none"]
    share = a["epochs"] / n["epochs"]
    gap = (n["best_val"] - a["best_val"]) * 100
    print(f"machine: {os.uname().nodename} {os.cpu_count()} cores; ASHA {pruner}")
    print(f"ASHA trained {a['epochs']} epochs = {share:.0%} of {n['epochs']} without pruning "
          f"(target <= 40%): {'met' if share <= 0.40 else 'MISSED'}")
    print(f"best val accuracy ASHA {a['best_val']:.4f} vs none {n['best_val']:.4f}: "
          f"{gap:+.2f} points behind (target <= 0.3): {'met' if gap <= 0.3 else 'MISSED'}")
    print(f"wall ASHA {a['wall_s']} s, none {n['wall_s']} s; best test accuracy ASHA "
          f"{a['best_test']}, none {n['best_test']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
