"""Benchmark 2: pruning pays. The quickstart space searched with the same number of trials,
the same seeds and the same sampler, once per pruner setting (an "arm") and once with no
pruning. Target: the pruner trains <= 40% of the epochs for a best validation accuracy within
0.3 points.

One search is noisy (the quickstart's validation split has 500 images: 0.3 points = 1.5
images; two trials run side by side, so ASHA's rung decisions depend on which ends first), so
every arm runs on several seeds (the space's `seed:`, which seeds the sampler, and
`train.seed`, which seeds the weights, the shuffling and the augmentation; the split stays the
quickstart's). Even one seed is not one outcome: ASHA's decisions depend on timing, so
`--repeats N` runs each pruner arm N times per seed (the no-pruning arm, which stops nothing,
once). The verdict pools every run of an arm: its epochs against the no-pruning epochs, and
the median of its best validation accuracies against the median of the no-pruning ones of the
same seeds (each run paired with its seed's).

    python bench/bench_pruning.py --seeds 0 1 2 --cpus 2          # the space's pruner vs none
    python bench/bench_pruning.py --seeds 0 1 2 --cpus 2 --repeats 2 \\
        --arm asha:grace_period=1,reduction_factor=4 --arm median \\
        --results /tmp/pruning.jsonl     # rows already in the file are reused, not rerun
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

PRUNER_KEYS = ("name", "grace_period", "reduction_factor", "brackets")


def parse_arm(text: str) -> dict:
    """"asha:grace_period=1,reduction_factor=4" -> {"name": "asha", "grace_period": 1, ...}."""
    name, _, rest = text.partition(":")
    arm: dict = {"name": name}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        arm[key.strip()] = int(value)
    return arm


def label(arm: dict) -> str:
    return ":".join([arm["name"]] + [f"{k}={arm[k]}" for k in PRUNER_KEYS[1:] if k in arm])


def read_rows(path: Path | None) -> list[dict]:
    if path is None or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_arm(args, arm: dict, seed: int, rep: int, tmp: str) -> dict:
    from spaces.yamlio import load_yaml

    name = f"bench_pruning_{arm['name']}_{seed}_{rep}"
    train, _ = load_yaml(Path(args.space).read_text(), args.space)
    train = {**(train.get("train") or {}), "seed": seed}  # the weights vary with the seed too
    if args.epochs:
        train["epochs"] = args.epochs
    space = variant(args.space, name=name, trials=args.trials, epochs=args.epochs, pruner=arm,
                    seed=seed, train=train)
    row = search(space, Path(tmp, name), args.fit, cpus=args.cpus)
    return {"arm": label(arm), "seed": seed, "rep": rep, "trials": space.budget.trials,
            "epochs_per_trial": space.fixed["train"]["epochs"], **row}


def verdict(rows: list[dict], arm: str, seeds: list[int]) -> str:
    """One line per run and the pooled verdict of one arm against no pruning."""
    base = {s: [r for r in rows if r["arm"] == "none" and r["seed"] == s] for s in seeds}
    mine = sorted((r for r in rows if r["arm"] == arm and r["seed"] in seeds),
                  key=lambda r: (r["seed"], r.get("rep", 0)))
    pairs = [(a, statistics.median(n["best_val"] for n in base[a["seed"]]),
              base[a["seed"]][0]["epochs"]) for a in mine]
    lines = [f"== {arm} vs none, seeds {seeds}, {len(mine)} runs"]
    for a, n_val, n_epochs in pairs:
        lines.append(f"seed {a['seed']} run {a.get('rep', 0)}: epochs {a['epochs']}/{n_epochs} "
                     f"= {a['epochs'] / n_epochs:.0%}, complete/pruned {a['complete']}/"
                     f"{a['pruned']}, best val {a['best_val']:.4f} vs {n_val:.4f} "
                     f"({(n_val - a['best_val']) * 100:+.2f} pts behind), test {a['best_test']}")
    share = sum(a["epochs"] for a, _, _ in pairs) / sum(n for _, _, n in pairs)
    med_share = statistics.median(a["epochs"] / n for a, _, n in pairs)
    med_a = statistics.median(a["best_val"] for a, _, _ in pairs)
    med_n = statistics.median(n for _, n, _ in pairs)
    gap = (med_n - med_a) * 100
    mean_gap = statistics.mean((n - a["best_val"]) * 100 for a, n, _ in pairs)
    lines.append(f"epochs: {share:.0%} of no pruning over the runs (median per run "
                 f"{med_share:.0%}; target <= 40%): {'met' if share <= 0.40 else 'MISSED'}")
    lines.append(f"median best val {med_a:.4f} vs {med_n:.4f}: {gap:+.2f} points behind (mean "
                 f"of per-run gaps {mean_gap:+.2f}; target <= 0.3): "
                 f"{'met' if gap <= 0.3 else 'MISSED'}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "spaces" / "quickstart.yaml"))
    ap.add_argument("--trials", type=int, help="default: the space's budget.trials")
    ap.add_argument("--epochs", type=int, help="default: the space's train.epochs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--arm", action="append", default=[],
                    help='a pruner setting, "NAME[:key=value,...]" (keys: grace_period, '
                         "reduction_factor, brackets); repeatable; default: the space's pruner")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs of each pruner arm per seed (no pruning runs once)")
    ap.add_argument("--cpus", type=int, help="size of the local Ray (default: the machine)")
    ap.add_argument("--results", type=Path, help="JSON-lines file: rows found there are "
                    "reused, new rows are appended")
    ap.add_argument("--fit", default="trainers:fit")
    args = ap.parse_args()
    from spaces import load_space

    base = load_space(args.space)
    own = {k: v for k, v in base.pruner.as_dict().items() if k in PRUNER_KEYS}
    arms = [parse_arm(a) for a in args.arm] or [own]
    size = (args.trials or base.budget.trials, args.epochs or base.fixed["train"]["epochs"])
    rows = [r for r in read_rows(args.results)  # of this size only
            if (r["trials"], r["epochs_per_trial"]) == size]
    done = {(r["arm"], r["seed"], r.get("rep", 0)) for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        for arm in [{"name": "none"}, *arms]:
            for seed, rep in [(s, r) for r in range(1 if arm["name"] == "none" else args.repeats)
                              for s in args.seeds]:
                if (label(arm), seed, rep) in done:
                    continue
                row = run_arm(args, arm, seed, rep, tmp)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.results is not None:
                    with args.results.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    print(f"machine: {os.uname().nodename} {os.cpu_count()} cores, Ray cpus {args.cpus}")
    for arm in arms:
        print(verdict(rows, label(arm), args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
