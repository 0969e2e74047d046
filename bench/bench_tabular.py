"""Benchmark: a search on the tabular example (spaces/wine_mlp.yaml, spaces/examples/wine.py)
against what a user would otherwise write. Same data split, same model family (the example's
MLP factory), same number of trials and epochs, several seeds; the best trial is the one with
the best validation accuracy, and its test accuracy (at its selected epoch) is reported.

Arms:
- `ours`: `search.lifecycle.runner.run_search` (the library path of `search run`: a local Ray, the
  study, TPE, ASHA, trainers.fit with its defaults: one-cycle lr, label smoothing), tracking
  and stages off; its wall time includes starting and stopping Ray.
- `optuna`: a hand-written Optuna loop: TPESampler(seed) + MedianPruner, a plain torch loop
  (AdamW at a constant lr, cross-entropy, batch 32), reporting validation accuracy per epoch.
- `sklearn`: LogisticRegression (C in 0.01..100) and MLPClassifier (64, 64) (alpha × initial
  lr, `--epochs` iterations), each a small grid selected on the validation part.

Searched in `ours` and `optuna`: lr and weight decay, with the MLP's own hyperparameters
(hidden, depth, dropout, activation) fixed at the factory's defaults; with `--own-kwargs` they
are searched too (`space.model.kwargs.*`, needs the factory-argument syntax of issue 11 item 1).

Timing: by default every arm runs in this process, one after another, and its wall time is
its own call (imports and the data already loaded by earlier arms are not counted, and the
first arm to build an optimizer pays for torch's compiler import). With `--fresh` each arm is
a process of its own, timed from its start to its exit, which is what a user waits for:
`search run <space>.yaml` (the CLI, stages off, tracking as the bench space says) against
`python <loop>.py`. `--fresh` adds two arms that show where the time goes: `optuna_sqlite`,
the same loop with its study in an SQLite file (what our study keeps for resume), and
`ray_floor`, a process that only starts a local Ray, runs one task and stops it: what any
search on Ray pays before its first trial.

Data: `--contract pooled` (today's trainer) gives the trainer the example's rows pooled and
lets it split them (seeded, stratified: val 0.2, test 0.2, split_seed 0); every arm then uses
that same split, computed by trainers.splits. `--contract parts` (needs issue 11 item 3) gives
the trainer the example's own fixed split, which every arm uses.

    python bench/bench_tabular.py --seeds 0 1 2 --trials 20 --epochs 30 --cpus 2
    python bench/bench_tabular.py --fresh --contract parts --own-kwargs --cpus 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "spaces" / "wine_mlp.yaml"
VAL, TEST, SPLIT_SEED = 0.2, 0.2, 0
LR, WD = (1.0e-3, 3.0e-2), (1.0e-5, 1.0e-2)


# ------------------------------------------------------------------------------------ the data
def split_data(contract: str) -> dict:
    """{"train"|"val"|"test": (X N×F float32, y int64)}: the split every arm uses."""
    from spaces.examples import wine

    if contract == "parts":
        return wine.load()
    import torch

    from trainers.splits import stratified_split

    x, y = wine.load(parts=False)
    idx = stratified_split(y, VAL, TEST, SPLIT_SEED)
    return {k: (x[i], y[i]) for k, i in zip(("train", "val", "test"), idx)}


# ------------------------------------------------------------------------------------- ours
def our_space(seed: int, trials: int, epochs: int, contract: str, own_kwargs: bool):
    from spaces import load_space
    from spaces.yamlio import dump_yaml

    data = our_space_data(seed, trials, epochs, contract, own_kwargs)
    space = load_space(dump_yaml(data), filename=f"{data['name']}.yaml")
    if own_kwargs and not any(p.name.startswith("model.kwargs.") for p in space.params):
        sys.exit("--own-kwargs: this checkout does not search space.model.kwargs yet "
                 "(issue 11 item 1); run without it")
    return space


def our_space_data(seed: int, trials: int, epochs: int, contract: str, own_kwargs: bool) -> dict:
    """The example's space with the bench's budget, seed and searched options (a YAML tree)."""
    from spaces.yamlio import load_yaml

    data, _ = load_yaml(SPACE.read_text(), str(SPACE))
    data["name"] = f"bench_tabular_s{seed}"
    data["seed"] = seed
    data.pop("stages", None)
    data["tracking"] = {"enabled": False}
    data["budget"] = {"trials": trials, "max_epochs": epochs}
    data["train"] = {**data.get("train", {}), "epochs": epochs}
    data["space"]["optimizer"] = {"lr": {"low": LR[0], "high": LR[1], "log": True},
                                  "weight_decay": {"low": WD[0], "high": WD[1], "log": True}}
    if not own_kwargs:
        data["space"].pop("model", None)
    if contract == "pooled":
        data["data"] = {**data["data"], "factory": "_tabular_data:load_pooled",
                        "val_fraction": VAL, "test_fraction": TEST, "split_seed": SPLIT_SEED}
    return data


def run_ours(seed: int, trials: int, epochs: int, contract: str, own_kwargs: bool,
             cpus: int | None) -> dict:
    from search.studies import study as studies
    from search.lifecycle.runner import RunOptions, run_search

    space = our_space(seed, trials, epochs, contract, own_kwargs)
    with tempfile.TemporaryDirectory(prefix="bench-tabular-") as out:
        start = time.time()
        outcome = run_search(space, RunOptions(output=out, new=True, live=False, retries=0,
                                               cpus=cpus))
        wall = time.time() - start
        study = studies.load_study(studies.open_storage(outcome.storage_url), space.name)
        trials_ = studies.of_run(study.trials, outcome.run_id)
        best = studies.best_trials(study)
    return {"arm": "ours", "seed": seed, "wall_s": round(wall, 1),
            "best_val": best[0].values[0] if best else None,
            "test": best[0].user_attrs.get("test_accuracy") if best else None,
            "epochs": sum(len(t.intermediate_values) for t in trials_),
            "states": dict(outcome.counts)}


# ------------------------------------------------------------------ a hand-written Optuna loop
def run_optuna(seed: int, trials: int, epochs: int, split: dict, own_kwargs: bool,
               storage: str | None = None) -> dict:
    """What a user writes without a service: TPE + MedianPruner around a plain torch loop
    (its study in memory, or in `storage`)."""
    import optuna
    import torch
    import torch.nn.functional as F

    from spaces.examples import wine

    (x, y), (xv, yv), (xt, yt) = split["train"], split["val"], split["test"]

    def accuracy(model, a, b) -> float:
        model.eval()
        with torch.no_grad():
            return (model(a).argmax(1) == b).float().mean().item()

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", *LR, log=True)
        wd = trial.suggest_float("weight_decay", *WD, log=True)
        kwargs = {}
        if own_kwargs:
            kwargs = {"hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
                      "depth": trial.suggest_int("depth", 1, 3),
                      "dropout": trial.suggest_float("dropout", 0.0, 0.5),
                      "activation": trial.suggest_categorical("activation",
                                                              ["relu", "gelu", "tanh"])}
        torch.manual_seed(seed * 1000 + trial.number)
        model = wine.make_model(num_classes=3, input_shape=tuple(x.shape[1:]), **kwargs)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
        best_val, best_test = -1.0, None
        for epoch in range(epochs):
            model.train()
            for i in torch.randperm(len(x)).split(32):
                opt.zero_grad()
                F.cross_entropy(model(x[i]), y[i]).backward()
                opt.step()
            val = accuracy(model, xv, yv)
            if val > best_val:
                best_val, best_test = val, accuracy(model, xt, yt)
            trial.report(val, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("test_accuracy", best_test)
        return best_val

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.time()
    study = optuna.create_study(direction="maximize", storage=storage,
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5,
                                                                   n_warmup_steps=5))
    study.optimize(objective, n_trials=trials)
    wall = time.time() - start
    best = study.best_trial
    return {"arm": "optuna" if storage is None else "optuna_sqlite", "seed": seed,
            "wall_s": round(wall, 1), "best_val": best.value,
            "test": best.user_attrs["test_accuracy"],
            "epochs": sum(len(t.intermediate_values) for t in study.trials)}


# ------------------------------------------------------ each arm a process of its own (--fresh)
def timed(cmd: list[str], **kwargs) -> tuple[float, str]:
    """(wall seconds from start to exit, stdout) of a process; its failure ends the bench."""
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    wall = time.time() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout[-2000:]}"
                 f"\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def fresh_ours(seed: int, trials: int, epochs: int, contract: str, own_kwargs: bool,
               cpus: int | None) -> dict:
    """`search run` on the bench space, as a user runs it; the best trial read from its study."""
    from search.studies import study as studies
    from spaces.yamlio import dump_yaml

    data = our_space_data(seed, trials, epochs, contract, own_kwargs)
    with tempfile.TemporaryDirectory(prefix="bench-tabular-") as out:
        path = Path(out, f"{data['name']}.yaml")
        path.write_text(dump_yaml(data))
        cli = Path(sys.executable).with_name("search")
        cmd = [str(cli), "run", str(path), "--output", str(Path(out, "runs")), "--no-stages",
               "--plain"] + (["--cpus", str(cpus)] if cpus else [])
        here = Path(__file__).resolve().parent  # the pooled contract's factory module
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(here)])}
        wall, _ = timed(cmd, env=env, cwd=str(ROOT))
        storage = studies.open_storage(f"sqlite:///{Path(out, 'runs', 'study.db')}")
        study = studies.load_study(storage, data["name"])
        best = studies.best_trials(study)
        epochs_run = sum(len(t.intermediate_values) for t in study.trials)
    return {"arm": "ours", "seed": seed, "wall_s": round(wall, 1),
            "best_val": best[0].values[0] if best else None,
            "test": best[0].user_attrs.get("test_accuracy") if best else None,
            "epochs": epochs_run}


def fresh_child(arm: str, seed: int, args) -> dict:
    """One loop arm in a new process (this script with --child), timed from outside."""
    cmd = [sys.executable, __file__, "--child", arm, "--seeds", str(seed), "--trials",
           str(args.trials), "--epochs", str(args.epochs), "--contract", args.contract] + \
        (["--own-kwargs"] if args.own_kwargs else []) + \
        (["--cpus", str(args.cpus)] if args.cpus else [])
    wall, out = timed(cmd)
    row = json.loads(out.strip().splitlines()[-1])
    return {**row, "in_process_s": row["wall_s"], "wall_s": round(wall, 1)}


def child(arm: str, seed: int, args) -> dict:
    if arm == "ray_floor":
        import ray

        start = time.time()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray.get(ray.remote(lambda: 1).remote())
        ray.shutdown()
        return {"arm": arm, "seed": seed, "wall_s": round(time.time() - start, 1),
                "best_val": None, "test": None}
    split = split_data(args.contract)
    with tempfile.TemporaryDirectory(prefix="bench-tabular-loop-") as out:
        storage = f"sqlite:///{Path(out, 'study.db')}" if arm == "optuna_sqlite" else None
        return run_optuna(seed, args.trials, args.epochs, split, args.own_kwargs, storage)


# ----------------------------------------------------------------- scikit-learn reference points
def run_sklearn(seed: int, split: dict, epochs: int) -> list[dict]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    (x, y), (xv, yv), (xt, yt) = [(a.numpy(), b.numpy()) for a, b in split.values()]
    grids = {
        "sklearn_logreg": [LogisticRegression(C=c, max_iter=2000, random_state=seed)
                           for c in (0.01, 0.1, 1.0, 10.0, 100.0)],
        "sklearn_mlp": [MLPClassifier((64, 64), alpha=a, learning_rate_init=lr, batch_size=32,
                                      max_iter=epochs, random_state=seed)
                        for a in (1e-4, 1e-2) for lr in (1e-3, 1e-2)],
    }
    rows = []
    for arm, models in grids.items():
        start = time.time()
        scored = [(m.fit(x, y).score(xv, yv), i, m) for i, m in enumerate(models)]
        val, _, best = max(scored, key=lambda s: (s[0], -s[1]))  # first of the best
        rows.append({"arm": arm, "seed": seed, "wall_s": round(time.time() - start, 1),
                     "best_val": val, "test": best.score(xt, yt)})
    return rows


def summarise(rows: list[dict]) -> str:
    lines = [f"{'arm':16} {'seeds':>5} {'median test':>11} {'tests':>24} {'median wall s':>13}"]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        tests = [r["test"] for r in mine if r["test"] is not None]
        median = f"{statistics.median(tests):>11.4f}" if tests else f"{'-':>11}"
        lines.append(f"{arm:16} {len(mine):>5} {median} "
                     f"{' '.join(f'{t:.3f}' for t in tests):>24} "
                     f"{statistics.median(r['wall_s'] for r in mine):>13.1f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of our local Ray")
    ap.add_argument("--contract", choices=("pooled", "parts"), default="pooled")
    ap.add_argument("--own-kwargs", action="store_true",
                    help="search the MLP's own hidden/depth/dropout/activation too")
    ap.add_argument("--arms", nargs="+", default=["ours", "optuna", "sklearn"])
    ap.add_argument("--results", type=Path, help="append each row to this JSONL file")
    ap.add_argument("--fresh", action="store_true",
                    help="each arm a process of its own, timed from start to exit")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one --fresh arm, in its own process
    args = ap.parse_args()

    if args.child:
        print(json.dumps(child(args.child, args.seeds[0], args)), flush=True)
        return
    if args.fresh and args.arms == ap.get_default("arms"):
        args.arms = ["ray_floor", "optuna", "optuna_sqlite", "ours"]
    split = split_data(args.contract)
    rows: list[dict] = []
    for seed in args.seeds:
        new = []
        if args.fresh:  # interleaved per seed: a noisy minute hurts every arm alike
            for arm in args.arms:
                if arm == "ours":
                    new.append(fresh_ours(seed, args.trials, args.epochs, args.contract,
                                          args.own_kwargs, args.cpus))
                elif arm != "sklearn":
                    new.append(fresh_child(arm, seed, args))
        elif "sklearn" in args.arms:
            new += run_sklearn(seed, split, args.epochs)
        if "optuna" in args.arms and not args.fresh:
            new.append(run_optuna(seed, args.trials, args.epochs, split, args.own_kwargs))
        if "ours" in args.arms and not args.fresh:
            new.append(run_ours(seed, args.trials, args.epochs, args.contract,
                                args.own_kwargs, args.cpus))
        for row in new:
            print(json.dumps(row), flush=True)
            if args.results:
                with args.results.open("a") as f:
                    f.write(json.dumps({**row, "trials": args.trials, "max_epochs": args.epochs,
                                        "contract": args.contract, "fresh": args.fresh,
                                        "own_kwargs": args.own_kwargs}) + "\n")
        rows += new
    print(summarise(rows))


if __name__ == "__main__":
    main()
