"""Pruning with several objectives (issue 17, target 1): the quickstart searched for
[val_accuracy, num_params], with no pruning and with its pruner (ASHA over Pareto ranks,
search/tune/pareto_pruners.py), on the same seeds. Target: the pruned search's hypervolume is
>= 95 % of the unpruned one's with <= 50 % of its epochs, median over 5 seeds.

    python bench/bench_pareto_pruning.py --seeds 0 1 2 3 4 --trials 10 --epochs 6 \\
        --results /tmp/pareto_pruning.jsonl        # rows already there are reused

The hypervolume is that of the COMPLETE trials' front (each run's `search best` front) in
(val_accuracy, num_params), against the reference point (0.95 accuracy, 1.1 x the space's
largest model): a front member below 95 % validation accuracy adds nothing, one point of
accuracy is a fifth of the accuracy axis. Epochs: every trial's, pruned ones included (a
pruned trial's `stopped_at_epoch`, a complete one's `epochs_run`). `--seeds` sets the space's
`seed:` (sampler) and `train.seed` (weights, shuffling, augmentation).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _variants import ROOT, variant  # noqa: E402

OBJECTIVES = [{"metric": "val_accuracy", "direction": "maximize"},
              {"metric": "num_params", "direction": "minimize"}]
ACCURACY_REF = 0.95


def largest_model(space) -> int:
    """The most weights a config of the space can have: the widest choice of every searched
    model setting (the quickstart searches width and dropout)."""
    from trainers.datasets import load_data
    from trainers.models import build_model, count_parameters

    data = load_data(space.fixed["data"])
    model = dict(space.fixed["model"])
    for p in space.params:
        if p.path.startswith("model.") and hasattr(p.distribution, "choices"):
            model[p.path.split(".", 1)[1]] = max(p.distribution.choices)
    return count_parameters(build_model(model, in_channels=data.in_channels,
                                        num_classes=data.num_classes,
                                        image_size=data.image_size))


def hypervolume(points: list[tuple[float, float]], largest: int,
                accuracy_ref: float = ACCURACY_REF) -> float:
    from search.tune.pareto import hypervolume_2d

    return hypervolume_2d([(-acc, params) for acc, params in points],
                          (-accuracy_ref, 1.1 * largest))


def run_arm(args, pruner: dict, seed: int, tmp: str) -> dict:
    from search.studies import study as studies
    from search.lifecycle.runner import RunOptions, run_search

    from spaces.yamlio import load_yaml

    name = f"pareto_{pruner['name']}_{seed}"
    data, _ = load_yaml(Path(args.space).read_text(), args.space)
    train = {**(data.get("train") or {}), "seed": seed}  # the weights vary with the seed too
    if args.epochs:
        train["epochs"] = args.epochs
    space = variant(args.space, name=name, trials=args.trials, epochs=args.epochs,
                    objective=OBJECTIVES, pruner=pruner, seed=seed, train=train)
    start = time.time()
    outcome = run_search(space, RunOptions(output=str(Path(tmp, name)), new=True, live=False,
                                           retries=0, cpus=args.cpus, fit=args.fit))
    study = studies.load_study(studies.open_storage(outcome.storage_url), space.name)
    trials = studies.of_run(study.trials, outcome.run_id)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    epochs = sum(int(t.user_attrs.get("epochs_run") or t.user_attrs.get("stopped_at_epoch")
                     or 0) for t in trials)
    return {"arm": pruner["name"], "pruner": pruner, "seed": seed, "trials": len(trials),
            "subsample": args.subsample,
            "complete": len(complete),
            "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "epochs": epochs, "wall_s": round(time.time() - start, 1),
            "points": [[t.values[0], t.values[1]] for t in complete],
            "front": [[t.values[0], t.values[1]] for t in studies.best_trials(study)],
            "load": round(os.getloadavg()[0], 1)}


def _end_children() -> None:
    """End the processes this one started (what a failed Ray start left behind)."""
    import signal

    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except OSError:
                pass


def start_ray(cpus: int, attempts: int = 40) -> None:
    """One local Ray for every search of the benchmark (run_search joins a Ray already
    started). On a machine shared with other heavy work Ray's start can miss its fixed 30 s
    window ("The current node timed out during startup"): try again."""
    import logging

    from search.cluster.connect import OBJECT_STORE_BYTES, local_token, quiet_environment

    local_token()  # before Ray is imported (search/cluster/connect.py)
    quiet_environment()
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=False, object_store_memory=OBJECT_STORE_BYTES)
            return
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception on the timeout
            print(f"ray start, attempt {attempt}: {err}", flush=True)
            ray.shutdown()
            _end_children()  # a failed start leaves its GCS and agents running
            time.sleep(30)
    raise SystemExit("could not start Ray")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "spaces" / "quickstart.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--trials", type=int, help="default: the space's budget.trials")
    ap.add_argument("--epochs", type=int, help="default: the space's train.epochs")
    ap.add_argument("--pruner", default=None,
                    help='the pruned arm\'s section as JSON; default: the space\'s own')
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--subsample", type=int, default=0,
                    help="train on a fixed, seeded N of the training images (bench/_peers.py)")
    ap.add_argument("--accuracy-ref", type=float, default=ACCURACY_REF,
                    help="the reference point's accuracy (lower it with --subsample)")
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()
    from _peers import subsampled_fit

    args.fit = subsampled_fit(args.subsample)
    from spaces import load_space

    space = load_space(Path(args.space).read_text(), filename=args.space)
    pruned = json.loads(args.pruner) if args.pruner else space.pruner.as_dict()
    largest = largest_model(space)
    rows = []
    if args.results and args.results.is_file():
        rows = [json.loads(line) for line in args.results.read_text().splitlines() if line]
    start_ray(args.cpus)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for pruner in ({"name": "none"}, pruned):
                if any(r["seed"] == seed and r["pruner"] == pruner
                       and r.get("trials") == (args.trials or space.budget.trials)
                       and r.get("subsample", 0) == args.subsample for r in rows):
                    continue
                row = run_arm(args, pruner, seed, tmp)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.results:
                    with args.results.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    ratios, shares = [], []
    print("| seed | HV none | HV pruned | ratio | epochs none | epochs pruned | share |")
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        none = next(r for r in rows if r["seed"] == seed and r["arm"] == "none"
                    and r.get("subsample", 0) == args.subsample)
        mine = next(r for r in rows if r["seed"] == seed and r["pruner"] == pruned
                    and r.get("subsample", 0) == args.subsample)
        hv_none = hypervolume([tuple(p) for p in none["points"]], largest, args.accuracy_ref)
        hv_mine = hypervolume([tuple(p) for p in mine["points"]], largest, args.accuracy_ref)
        ratio = hv_mine / hv_none if hv_none > 0 else float("nan")
        share = mine["epochs"] / none["epochs"]
        ratios.append(ratio)
        shares.append(share)
        print(f"| {seed} | {hv_none:.4g} | {hv_mine:.4g} | {ratio:.3f} | {none['epochs']} | "
              f"{mine['epochs']} | {share:.2f} |")
    r, s = statistics.median(ratios), statistics.median(shares)
    print(f"median: hypervolume {r:.3f} of no pruning ({'met' if r >= 0.95 else 'missed'}: "
          f">= 0.95), epochs {s:.2f} ({'met' if s <= 0.5 else 'missed'}: <= 0.50); "
          f"largest model {largest:,} weights; reference accuracy {args.accuracy_ref}; "
          f"training subsample {args.subsample or 'none'}; load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
