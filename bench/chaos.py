"""Chaos: kill the `search run` driver with SIGKILL at chosen and random moments, `search resume`
until done, then check that no trial was lost or run twice and that MLflow matches the study.

    .venv/bin/python bench/chaos.py [--rounds N] [--seed S] [--trials T] [--epochs E]

Each round is one search (digits, a small MLP, T trials x E epochs, two stages) killed at: the
moment its run file appears (before Tune's first save), a random moment of the search, and
inside each stage; with --extra K, K more kills at random delays after a resume starts
(before the stage kills, so they land in Ray's start-up or the search). tests/search/lifecycle/test_chaos.py
runs one round. Prints one line per round and a total: kills survived, trials lost, duplicated.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = """
name: chaos
seed: {seed}
data: {{dataset: digits, batch_size: 128}}
model: {{name: mlp, width: 16, depth: 1}}
train: {{epochs: {epochs}}}
space:
  optimizer:
    lr: {{low: 1.0e-3, high: 3.0e-2, log: true}}
objective: {{metric: val_accuracy}}
budget: {{trials: {trials}}}
sampler: {{name: random}}
pruner: {{name: none}}
resources: {{cpu: 1}}
tracking: {{enabled: true}}
stages:
  - {{stage: finetune, epochs: 3}}
  - {{stage: quantize, mode: int8_dynamic}}
"""
STAGES = ("0-best", "1-finetune", "2-quantize")


@dataclass
class Round:
    kills: list[str] = field(default_factory=list)   # where each kill landed
    commands: int = 0
    seconds: float = 0.0
    trials: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # moments the run passed unkilled


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from search.cli import main; "
            "sys.exit(main(sys.argv[1:]))", *argv]


def _completed(db: Path) -> int:
    if not db.is_file():
        return 0
    try:  # read-only: never create the schema under the driver
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            (n,) = conn.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()
        return n
    except sqlite3.Error:
        return 0


def _run_file(out: Path) -> dict:
    for path in sorted(out.glob("run-*/search_run.json")):
        try:
            return json.loads(path.read_text())
        except ValueError:
            return {}
    return {}


def _stage(out: Path) -> str | None:
    for path in out.glob("stages/*/pipeline.json"):
        try:
            state = json.loads(path.read_text())
        except ValueError:
            return None
        return state.get("current") if state.get("state") == "running" else None
    return None


def _moments(rng: random.Random, extra: int) -> list[tuple[str, float]]:
    """(where, random delay after reaching it) for each kill of a round, in order."""
    plan = [("run file", rng.uniform(0.0, 0.3)), ("search", rng.uniform(0.0, 2.0))]
    plan += [("anywhere", rng.uniform(1.0, 8.0)) for _ in range(extra)]  # after a restart
    # A stage of this tiny search lasts well under a second on a quiet machine: a short delay
    # keeps the kill inside the stage it was aimed at.
    plan += [(f"stage {name}", rng.uniform(0.0, 0.1)) for name in STAGES]
    return plan


def _reached(where: str, out: Path, trials: int) -> bool:
    if where == "run file":
        return bool(_run_file(out))
    if where == "search":
        return 1 <= _completed(out / "study.db") < trials
    if where.startswith("stage "):
        return _stage(out) == where[len("stage "):]
    return True


def one_round(root: Path, seed: int, trials: int, epochs: int, extra: int = 0,
              timeout: float = 240.0) -> Round:
    rng = random.Random(seed)
    out, space = root / "out", root / "chaos.yaml"
    space.write_text(SPACE.format(seed=seed, trials=trials, epochs=epochs))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    result, started = Round(), time.monotonic()
    moments = _moments(rng, extra)
    first = True
    while True:
        argv = _cli("run", str(space), "--output", str(out), "--plain", "--cpus", "2") if first \
            else _cli("resume", str(out), "--plain")
        first = False
        log = (root / f"driver-{result.commands}.log").open("w")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True,
                                cwd=root)
        result.commands += 1
        try:
            if moments:
                where, delay = moments[0]
                begin = time.monotonic()
                while proc.poll() is None and not _reached(where, out, trials):
                    if time.monotonic() - begin > timeout:
                        raise TimeoutError(f"{where} not reached in {timeout:.0f} s")
                    time.sleep(0.05)
                if proc.poll() is None:
                    time.sleep(delay)
                    if proc.poll() is None:
                        os.kill(proc.pid, signal.SIGKILL)
                        result.kills.append(f"{where} +{delay:.2f}s")
                        moments.pop(0)
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
            try:  # a safety net only: the watchdog should have left nothing
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        info = _run_file(out)
        if info.get("state") == "finished" and info.get("stages") not in ("pending", "running"):
            # done (a kill may land after the last write: then nothing is left to resume)
            if info.get("stages") not in ("done", None):
                result.problems.append(f"stages {info.get('stages')}: " + _tail(root, result))
            result.missed = [m[0] for m in moments]  # passed before they could be hit
            break
        if code not in (0, -signal.SIGKILL):
            result.problems.append(f"command {result.commands} exited {code}: "
                                   + _tail(root, result))
            break
        if result.commands > 20:
            result.problems.append("20 commands without finishing")
            break
    result.seconds = time.monotonic() - started
    check(out, trials, result)
    return result


def _tail(root: Path, result: Round) -> str:
    return (root / f"driver-{result.commands - 1}.log").read_text()[-2000:]


def check(out: Path, trials: int, result: Round) -> None:
    """The study has `trials` trials, each ended once; MLflow has one child per study trial
    with the same state and no run left RUNNING; every stage finished."""
    import optuna
    from mlflow import MlflowClient

    info = _run_file(out)
    study = optuna.load_study(study_name=info["study_name"], storage=info["storage_url"])
    mine = [t for t in study.trials if t.user_attrs.get("run_id") == info["run_id"]]
    result.trials = len(mine)
    result.lost = max(0, trials - len(mine)) + sum(
        t.state.name not in ("COMPLETE", "PRUNED") for t in mine)
    result.duplicated = max(0, len(mine) - trials) + len(mine) - len({t.number for t in mine})
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("chaos")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    children = [r for r in runs if r.data.tags.get("search.key", "").startswith("trial/")]
    by_number: dict[int, list] = {}
    for r in children:
        by_number.setdefault(int(r.data.tags["optuna.trial_number"]), []).append(r)
    names = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAIL": "FAILED"}
    for t in mine:
        got = by_number.get(t.number, [])
        if len(got) != 1:
            result.problems.append(f"trial #{t.number}: {len(got)} MLflow runs")
            continue
        if got[0].data.tags.get("search.state") != names.get(t.state.name) or \
                got[0].info.status == "RUNNING":
            result.problems.append(f"trial #{t.number}: study {t.state.name}, MLflow "
                                   f"{got[0].data.tags.get('search.state')} "
                                   f"{got[0].info.status}")
        if t.user_attrs.get("mlflow_run_id") != got[0].info.run_id:
            result.problems.append(f"trial #{t.number}: mlflow_run_id not its run")
    if set(by_number) - {t.number for t in mine}:
        result.problems.append(f"MLflow runs of no study trial: {set(by_number)}")
    running = [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    if running:
        result.problems.append(f"MLflow runs left RUNNING: {running}")
    stages = out / "stages" / info["run_id"]
    missing = [s for s in STAGES if not (stages / s / "result.json").is_file()]
    if missing:
        result.problems.append(f"stages not finished: {missing}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--extra", type=int, default=2, help="random kills per round")
    args = parser.parse_args()
    total = Round()
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            r = one_round(Path(tmp), args.seed + i, args.trials, args.epochs, args.extra)
        print(f"round {i + 1}: {len(r.kills)} kills ({'; '.join(r.kills)}), {r.commands} "
              f"commands, {r.seconds:.0f} s: {r.trials} trials, lost {r.lost}, duplicated "
              f"{r.duplicated}, missed {r.missed or 'none'}, problems {r.problems or 'none'}",
              flush=True)
        total.kills += r.kills
        total.lost += r.lost
        total.duplicated += r.duplicated
        total.problems += r.problems
    print(f"total: {len(total.kills)} kills survived, trials lost {total.lost}, duplicated "
          f"{total.duplicated}, problems {len(total.problems)}")
    return 1 if total.lost or total.duplicated or total.problems else 0


if __name__ == "__main__":
    sys.exit(main())
