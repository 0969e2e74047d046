"""Issue 17, target 2: extending a finished search pays. A finished E-epoch search of the
quickstart space, extended to 2E epochs with `--extend` (only the trials the pruner's rule
keeps continue, from their checkpoints; budget.trials of the extension = that number, so no
new trial runs), against a fresh 2E-epoch search of the same trials (same space, seed and
pruner). Target: the extended search's best validation accuracy is at least the fresh one's,
with <= 60% of its epochs (the E-epoch search's epochs plus the extension's).

    python bench/bench_extend.py --seeds 0 --trials 16 --epochs 12 --cpus 2   # the target
    python bench/bench_extend.py --seeds 0 --trials 6 --epochs 3 --cpus 2     # reduced
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _variants import ROOT, variant  # noqa: E402


def run(space, output: Path, args, *, extend: bool = False) -> tuple[dict, float]:
    from search.lifecycle.runner import RunOptions, run_search
    from search.studies import study as studies

    start = time.time()
    outcome = run_search(space, RunOptions(output=str(output), fit=args.fit, live=False,
                                           retries=0, cpus=args.cpus, extend=extend))
    study = studies.load_study(studies.open_storage(outcome.storage_url), outcome.study_name)
    by_number = {t.number: t for t in study.trials}
    trained = 0
    for t in studies.of_run(study.trials, outcome.run_id):
        before = by_number[t.user_attrs["extends"]] if "extends" in t.user_attrs else None
        trained += len(t.intermediate_values) - (len(before.intermediate_values)
                                                 if before is not None else 0)
    best = studies.best_trials(study)[0]
    complete = sum(t.state.name == "COMPLETE" for t in studies.of_run(study.trials,
                                                                        outcome.run_id))
    return ({"epochs": trained, "best_val": best.values[0], "best_number": best.number,
             "complete": complete,
             "best_test": best.user_attrs.get("test_accuracy"),
             "best_extends": best.user_attrs.get("extends")}, time.time() - start)


def one_seed(args, seed: int, tmp: str) -> dict:
    from search.lifecycle.extend import keep_share
    from spaces.yamlio import load_yaml

    data, _ = load_yaml(Path(args.space).read_text(), args.space)

    def space(name: str, trials: int, epochs: int):
        train = {**(data.get("train") or {}), "seed": seed, "epochs": epochs}
        pruner = {"pruner": json.loads(args.pruner)} if args.pruner else {}
        return variant(args.space, name=name, trials=trials, epochs=epochs, seed=seed,
                       train=train, **pruner)

    fresh, wall_fresh = run(space(f"fresh{seed}", args.trials, 2 * args.epochs),
                            Path(tmp, "fresh"), args)
    short = space(f"ext{seed}", args.trials, args.epochs)
    first, wall_first = run(short, Path(tmp, "ext"), args)
    # the pruner's share, of the trials that can continue (COMPLETE): no new trial runs
    keep = max(1, min(args.keep or math.ceil(keep_share(short) * args.trials),
                      first["complete"]))
    extended, wall_ext = run(space(f"ext{seed}", keep, 2 * args.epochs), Path(tmp, "ext"),
                             args, extend=True)
    epochs = first["epochs"] + extended["epochs"]
    return {"seed": seed, "trials": args.trials, "subsample": args.subsample, "epochs_short": args.epochs,
            "epochs_long": 2 * args.epochs, "continued": keep,
            "fresh_epochs": fresh["epochs"], "fresh_best_val": fresh["best_val"],
            "fresh_best_test": fresh["best_test"],
            "short_epochs": first["epochs"], "short_best_val": first["best_val"],
            "short_complete": first["complete"], "pruner": short.pruner.name,
            "extension_epochs": extended["epochs"], "extended_best_val": extended["best_val"],
            "extended_best_test": extended["best_test"],
            "extended_best_is_continuation": extended["best_extends"] is not None,
            "epoch_share": round(epochs / fresh["epochs"], 3),
            "wall_s": {"fresh": round(wall_fresh), "short": round(wall_first),
                       "extension": round(wall_ext)}}


def start_ray(cpus: int | None, attempts: int = 3) -> None:
    """One local Ray for the three searches (each `run_search` joins it): on a loaded machine
    every start risks Ray's 30 s raylet timeout, so it is started once, retried."""
    import ray

    from search.cluster.connect import quiet_environment

    quiet_environment()
    for attempt in range(attempts):
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
            return
        except Exception:  # "The current node timed out during startup"
            ray.shutdown()
            if attempt == attempts - 1:
                raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(ROOT / "spaces" / "quickstart.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=12, help="E: the short search's epochs")
    parser.add_argument("--cpus", type=int, default=None)
    parser.add_argument("--fit", default="trainers:fit")
    parser.add_argument("--subsample", type=int, default=0,
                        help="train on a fixed, seeded N of the training images (sets --fit "
                             "to bench._peers:fit, bench/_peers.py)")
    parser.add_argument("--pruner", help="the space's pruner section as JSON (default: its own)")
    parser.add_argument("--keep", type=int, help="trials continued (default: the pruner's "
                                                 "share of the trials, search/README.md)")
    parser.add_argument("--results", type=Path, help="append one JSON row per seed here")
    args = parser.parse_args(argv)
    if args.subsample:
        from _peers import subsampled_fit

        args.fit = subsampled_fit(args.subsample)
    start_ray(args.cpus)
    met = 0
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="bench_extend_") as tmp:
            row = one_seed(args, seed, tmp)
        ok = row["extended_best_val"] >= row["fresh_best_val"] and row["epoch_share"] <= 0.6
        met += ok
        print(json.dumps(row))
        print(f"seed {seed}: extended {row['extended_best_val']:.4f} with "
              f"{row['short_epochs']}+{row['extension_epochs']} epochs vs fresh "
              f"{row['fresh_best_val']:.4f} with {row['fresh_epochs']} "
              f"({row['epoch_share']:.0%}): {'met' if ok else 'missed'}")
        if args.results:
            with args.results.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print(f"target 2 met on {met} of {len(args.seeds)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
