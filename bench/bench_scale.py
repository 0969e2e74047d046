"""Benchmark: the search's cost per trial as the search grows (20, 200, 1,000 trials).

The real command line (`python -m search.cli run SPACE --fit search.testing:known_work_fit`, a
fresh process) on trials of known work (each epoch sleeps `--seconds`; no training), with MLflow
tracking on, the study in SQLite (`<output>/study.db`, MLflow in `<output>/mlflow.db`) or
PostgreSQL (a fresh database for the study and one for MLflow per run, dropped after), TPE, no
pruning, 1 CPU per trial on a 2-CPU local Ray. Per run: the wall time, the ideal (trials x
epochs x seconds / 2 slots), the per-trial overhead (wall - ideal) / trials, the same without
the start-up (time to the first trial's start), the driver's peak memory (VmHWM, sampled), and
that every trial ended COMPLETE in the study and has its MLflow run.
Targets: overhead per trial at 1,000 trials <= 1.2 x at 20; driver memory at most linear;
1,000 trials with tracking end without error.

    python bench/bench_scale.py                                   # 20, 200, 1000 x both
    python bench/bench_scale.py --sizes 20 200 --storages sqlite --results /tmp/scale.jsonl
    python bench/bench_scale.py --sizes 1000 --profile /tmp/prof  # py-spy stacks of the driver
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_overhead import SPACE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql://postgres@127.0.0.1:5432"
RAY_START_FAILED = "node timed out during startup"


def peak_kib(pid: int) -> int | None:
    """The process's peak resident memory so far (VmHWM), KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time the process has used so far (user + system), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def pg_exec(sql: str, url: str = PG + "/postgres") -> list:
    import sqlalchemy as sa

    from search.urls import with_driver

    engine = sa.create_engine(with_driver(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(sql))
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def counts(study_url: str, name: str, mlflow_uri: str) -> dict:
    """Trials of the study by state, and the MLflow runs of the search (parent + trials)."""
    import mlflow
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from search.urls import with_driver

    study = optuna.load_study(study_name=name, storage=with_driver(study_url))
    out: dict = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    client = mlflow.MlflowClient(with_driver(mlflow_uri))
    exp = client.get_experiment_by_name(name)
    runs, token = 0, None
    while exp is not None:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        runs += len(page)
        token = page.token
        if not token:
            break
    out["mlflow_runs"] = runs
    return out


def run_one(args, trials: int, storage: str, tmp: Path) -> dict:
    """One run; again (up to 3 times) when Ray did not start within its 30 s limit, which an
    overloaded machine misses."""
    for attempt in range(1, 4):
        row = run_once(args, trials, storage, tmp / f"try{attempt}")
        if RAY_START_FAILED not in row.get("stderr_tail", ""):
            break
    return {**row, "attempts": attempt}


def run_once(args, trials: int, storage: str, tmp: Path) -> dict:
    name = f"bench_scale_{trials}"
    folder = tmp / f"{storage}_{trials}"
    folder.mkdir(parents=True)
    space, log = folder / "space.yaml", folder / "fit.log"
    text = SPACE.format(trials=trials, epochs=args.epochs).replace(
        "name: bench_overhead", f"name: {name}")
    if args.tracking:
        text = text.replace("tracking: {enabled: false}", "tracking: {enabled: true}")
    space.write_text(text)
    out = folder / "out"
    cmd = [sys.executable, "-m", "search.cli", "run", str(space), "--plain", "--new",
           "--output", str(out), "--fit", "search.testing:known_work_fit",
           "--cpus", str(args.cpus), "--no-stages"]
    dbs: list[str] = []
    if storage == "postgresql":
        tag = f"{os.getpid()}_{trials}_{int(time.time())}"
        dbs = [f"bench_scale_study_{tag}", f"bench_scale_mlflow_{tag}"]
        for db in dbs:
            pg_exec(f"CREATE DATABASE {db}")
        study_url, mlflow_uri = f"{PG}/{dbs[0]}", f"{PG}/{dbs[1]}"
        cmd += ["--storage", study_url, "--tracking-uri", mlflow_uri]
    else:
        study_url = f"sqlite:///{out / 'study.db'}"
        mlflow_uri = f"sqlite:///{out / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SEARCH_KNOWN_WORK_SECONDS": str(args.seconds),
           "SEARCH_KNOWN_WORK_LOG": str(log), "MLFLOW_TRACKING_URI": mlflow_uri}
    load = os.getloadavg()[0]
    start = time.time()
    with open(folder / "stdout.txt", "w") as so, open(folder / "stderr.txt", "w") as se:
        proc = subprocess.Popen(cmd, env=env, cwd=folder, stdout=so, stderr=se)
        peak, cpu, cpu_first = [0], [0.0], [None]
        spy = None
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(proc.pid),
                 "-r", "20", "--format", "raw", "-o",
                 str(Path(args.profile, f"{storage}_{trials}.txt"))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def watch() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], peak_kib(proc.pid) or 0)
                cpu[0] = cpu_seconds(proc.pid) or cpu[0]
                if cpu_first[0] is None and log.is_file():  # start-up done: a trial began
                    cpu_first[0] = cpu[0]
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        rc = proc.wait()
        watcher.join()
        if spy is not None:  # writing an hour's stacks can take minutes
            try:
                spy.wait(timeout=600)
            except subprocess.TimeoutExpired:
                spy.kill()
    wall = time.time() - start
    starts = [json.loads(x)["t"] for x in log.read_text().splitlines()] if log.is_file() else []
    first = min(starts) - start if starts else float("nan")
    ideal = trials * args.epochs * args.seconds / args.cpus
    row = {"trials": trials, "storage": storage, "epochs": args.epochs, "seconds": args.seconds,
           "tracking": args.tracking, "rc": rc, "wall_s": round(wall, 1),
           "ideal_s": round(ideal, 1), "first_trial_s": round(first, 1),
           "overhead_per_trial_s": round((wall - ideal) / trials, 3),
           "loop_overhead_per_trial_s": round((wall - first - ideal) / trials, 3),
           "driver_peak_mib": round(peak[0] / 1024, 1),
           "driver_cpu_per_trial_s": round(cpu[0] / trials, 3),
           "driver_loop_cpu_per_trial_s": None if cpu_first[0] is None
           else round((cpu[0] - cpu_first[0]) / trials, 3), "load_before": round(load, 2),
           "load_after": round(os.getloadavg()[0], 2)}
    try:
        row["counts"] = counts(study_url, name, mlflow_uri)
    except Exception as err:  # noqa: BLE001 - reported in the row, the verdict says it
        row["counts"] = {"error": f"{type(err).__name__}: {err}"[:300]}
    if rc != 0:
        row["stderr_tail"] = (folder / "stderr.txt").read_text()[-1500:]
    for db in dbs:
        pg_exec(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    if args.keep:
        shutil.copytree(folder, Path(args.keep, folder.name), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.db", "*.db-*"))
    return row


def verdict(rows: list[dict]) -> str:
    lines = [f"{'storage':10s} {'trials':>6s} {'wall s':>8s} {'ideal s':>8s} {'first s':>8s} "
             f"{'overhead/trial s':>17s} {'after start-up':>15s} {'driver CPU/trial s':>18s} "
             f"{'after start-up':>15s} {'driver MiB':>10s}  ended"]
    for r in sorted(rows, key=lambda r: (r["storage"], r["trials"])):
        c = r.get("counts", {})
        ended = (f"{c.get('COMPLETE', 0)} complete, {c.get('mlflow_runs', '?')} MLflow runs"
                 if "error" not in c else c["error"])
        lines.append(f"{r['storage']:10s} {r['trials']:6d} {r['wall_s']:8.1f} {r['ideal_s']:8.1f} "
                     f"{r['first_trial_s']:8.1f} {r['overhead_per_trial_s']:17.3f} "
                     f"{r['loop_overhead_per_trial_s']:15.3f} "
                     f"{r.get('driver_cpu_per_trial_s', float('nan')):18.3f} "
                     f"{r.get('driver_loop_cpu_per_trial_s') or float('nan'):15.3f} "
                     f"{r['driver_peak_mib']:10.1f}  "
                     f"rc {r['rc']}, {ended} (load {r['load_before']}-{r['load_after']})")
    for storage in sorted({r["storage"] for r in rows}):
        mine = {r["trials"]: r for r in rows if r["storage"] == storage}
        if min(mine) < max(mine):
            lo, hi = mine[min(mine)], mine[max(mine)]
            ratio = hi["overhead_per_trial_s"] / lo["overhead_per_trial_s"]
            loop = hi["loop_overhead_per_trial_s"] / lo["loop_overhead_per_trial_s"]
            per_trial_kib = (hi["driver_peak_mib"] - lo["driver_peak_mib"]) * 1024 / (
                hi["trials"] - lo["trials"])
            ok = all(r["rc"] == 0 and r.get("counts", {}).get("COMPLETE") == r["trials"]
                     for r in mine.values())
            lines.append(f"{storage}: overhead per trial at {hi['trials']} = {ratio:.2f} x at "
                         f"{lo['trials']} (after start-up {loop:.2f} x; target <= 1.2): "
                         f"{'met' if ratio <= 1.2 else 'MISSED'}; driver memory "
                         f"{lo['driver_peak_mib']:.0f} -> {hi['driver_peak_mib']:.0f} MiB ("
                         f"{per_trial_kib:.0f} KiB per trial); every "
                         f"run ended with all trials COMPLETE: {'yes' if ok else 'NO'}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 200, 1000])
    ap.add_argument("--storages", nargs="+", default=["sqlite", "postgresql"],
                    choices=["sqlite", "postgresql"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=0.1, help="duration of one epoch")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--no-tracking", dest="tracking", action="store_false")
    ap.add_argument("--results", type=Path, help="JSON-lines file: rows are appended")
    ap.add_argument("--profile", help="folder for py-spy stacks of each run's driver")
    ap.add_argument("--keep", help="copy each run's folder (output, logs) here")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    rows = [json.loads(x) for x in args.results.read_text().splitlines()] \
        if args.results and args.results.is_file() else []
    if not args.report_only:
        with tempfile.TemporaryDirectory() as tmp:
            for storage in args.storages:
                for trials in args.sizes:
                    row = run_one(args, trials, storage, Path(tmp))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if args.results:
                        with args.results.open("a") as f:
                            f.write(json.dumps(row) + "\n")
    print(f"machine: {os.uname().nodename} {os.cpu_count()} cores; known work: "
          f"{args.epochs} epochs x {args.seconds:g} s per trial, {args.cpus} slots, tracking "
          f"{'on' if args.tracking else 'off'}")
    print(verdict(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
