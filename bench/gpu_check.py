"""The GPU check: what the trainer does on one GPU, in a few minutes, with torch alone.

    python bench/gpu_check.py --out $OUT/gpu_check.json      # on the lent GPU machine
    python bench/gpu_check.py --quick --out /tmp/q.json      # on the CPU, seconds (the tests)

Imports only `trainers` and torch (the GPU machine has no Ray, Optuna or MLflow). Measures:

(a) `trainers.fit` against a hand-written loop (same model, weights, data, AdamW, batch size)
    on data held on the GPU, fp32 and bf16: training samples/s, the median of the epochs after
    the first (cuDNN autotuning and allocator warm-up). Target: fit >= 0.95 x the loop.
(b) 1, 4 and 8 trainer processes packed on one GPU (multiprocessing spawn, each capped at its
    share of the memory as a search trial is), started together: aggregate samples/s (all the
    samples trained / the wall time from the common start to the last end) against one.
    Target: 8 packed >= 3 x one.
(c) Among packed processes, one allocating more than its share: it fails with
    OutOfMemoryError, the others finish their training.
(d) Batches copied GPU -> CPU by `iterate_batches` equal `.cpu()` of the same rows.
(e) 8-bit images held compact on the GPU (uint8, normalised per batch there: what
    `load_data` does for MNIST, CIFAR, ...) against the same images held as float32: the
    shuffled batches equal bit for bit, the memory held, and `trainers.fit` samples/s on each.

Prints a table and writes the figures as JSON to --out. `--quick` runs the same code on the
CPU with tiny sizes (1 and 2 packed processes; the out-of-memory process raises torch's error
itself, since the CPU has no per-process cap), so the script is tested in the suite.
"""
from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from trainers import build_model, fit  # noqa: E402
from trainers.batches import TensorSplit, iterate_batches  # noqa: E402
from trainers.datasets import Data  # noqa: E402
from trainers.devices import MEMORY_FRACTION_ENV  # noqa: E402

FORBIDDEN = ("ray", "optuna", "mlflow", "search", "spaces")
FULL = {"samples": 50_000, "size": 28, "epochs": 4, "batch": 128, "packed": (1, 4, 8),
        "oom_procs": 3, "copy_rows": 200_000, "pixels": 60_000}
QUICK = {"samples": 1_200, "size": 12, "epochs": 2, "batch": 64, "packed": (1, 2),
         "oom_procs": 2, "copy_rows": 4_000, "pixels": 1_500}


def synthetic(n: int, size: int, device: torch.device, seed: int = 0) -> Data:
    """Ten classes of 1 x size x size images (a learnable class-dependent shift of noise), held
    on `device` as trainers' in-memory path holds a small dataset: 80/10/10 split."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 1, size, size, generator=g) * 0.5 + y.view(-1, 1, 1, 1) / 10.0
    x, y = x.to(device), y.to(device)
    a, b = int(n * 0.8), int(n * 0.9)
    splits = [TensorSplit(x[i:j].contiguous(), y[i:j].contiguous()) for i, j in
              ((0, a), (a, b), (b, n))]
    return Data(*splits, num_classes=10, in_channels=1, image_size=(size, size), mean=(0.0,),
                std=(1.0,), in_memory=True, name="synthetic")


def same_work(device: torch.device, precision: str, epochs: int, batch: int) -> dict:
    """fit's config doing the hand loop's work per batch: no augmentation, no label
    smoothing, a constant lr."""
    return {"data": {"batch_size": batch}, "augment": {"shift": 0},
            "scheduler": {"name": "none"}, "regularization": {"label_smoothing": 0.0},
            "train": {"epochs": epochs, "device": device.type, "precision": precision,
                      "threads": 1 if device.type == "cpu" else None}}


def hand_loop(model, data: Data, *, epochs: int, batch: int, precision: str,
              device: torch.device) -> list[float]:
    """Shuffle, forward (autocast for bf16), cross entropy, backward, AdamW step."""
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4,
                            **({"fused": True} if fused else {}))
    x, y = data.train.x, data.train.y
    g = torch.Generator(device).manual_seed(0)
    dtype = torch.bfloat16 if precision == "bf16" else None
    rates = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(y), generator=g, device=device)
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(x.index_select(0, idx)).float(),
                                       y.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss.item()
        rates.append(len(y) / (time.perf_counter() - start))
    return rates


def settled(rates: list[float]) -> float:
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def fit_vs_loop(sizes: dict, device: torch.device) -> list[dict]:
    """(a): for fp32 and bf16, fit then the loop from the same initial weights."""
    data = synthetic(sizes["samples"], sizes["size"], device)
    torch.manual_seed(0)
    model0 = build_model({"name": "cnn"}, in_channels=1, num_classes=10,
                         image_size=(sizes["size"], sizes["size"]))
    rows = []
    for precision in ("fp32", "bf16"):
        cfg = same_work(device, precision, sizes["epochs"], sizes["batch"])
        got = fit(cfg, data=data, model=copy.deepcopy(model0).to(device))
        fit_rate = settled([h["samples_per_sec"] for h in got.history])
        loop_rate = settled(hand_loop(copy.deepcopy(model0).to(device), data,
                                      epochs=sizes["epochs"], batch=sizes["batch"],
                                      precision=precision, device=device))
        rows.append({"precision": precision, "fit_samples_per_s": fit_rate,
                     "loop_samples_per_s": loop_rate, "ratio": fit_rate / loop_rate,
                     "device": got.device})
    return rows


def packed_worker(rank: int, device_type: str, fraction: float, sizes: dict, barrier,
                  results, overflow: bool) -> None:
    """One packed process: its memory share set as a search trial's is, then fit (or, with
    `overflow`, an allocation of 1.5 x its share) from the common start."""
    os.environ[MEMORY_FRACTION_ENV] = repr(fraction)
    torch.set_num_threads(1)
    device = torch.device(device_type)
    out: dict = {"rank": rank}
    try:
        if device.type == "cuda":
            from trainers.devices import prepare

            prepare(device)  # the cap: what fit applies, here before the data is allocated
        data = synthetic(sizes["samples"], sizes["size"], device, seed=rank)
        barrier.wait()
        out["start"] = time.time()
        if overflow:
            if device.type == "cuda":
                total = torch.cuda.get_device_properties(device).total_memory
                torch.empty(int(total * fraction * 1.5), dtype=torch.uint8, device=device)
            else:  # no per-process cap on the CPU: the error a capped GPU process gets
                raise torch.OutOfMemoryError("simulated on the CPU (--quick)")
        got = fit(same_work(device, "fp32", sizes["epochs"], sizes["batch"]), data=data)
        out.update(ok=True, samples=len(data.train) * len(got.history),
                   peak_mb=got.device.get("gpu_peak_mb"))
    except torch.OutOfMemoryError as err:
        out.update(ok=False, error=f"OutOfMemoryError: {str(err).splitlines()[0][:200]}")
    except Exception as err:  # noqa: BLE001 - reported in the table, not hidden
        out.update(ok=False, error=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
    out["end"] = time.time()
    results.put(out)


def run_packed(n: int, sizes: dict, device: torch.device, oom_rank: int | None = None) -> list:
    """n processes on the device, each with a 1/n share; results by rank. Spawned on a GPU (a
    forked CUDA context is unusable); forked on the CPU (--quick), which skips re-importing
    torch in each."""
    ctx = mp.get_context("spawn" if device.type == "cuda" else "fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=packed_worker, args=(
        r, device.type, 1.0 / n, sizes, barrier, results, r == oom_rank)) for r in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return sorted(got, key=lambda r: r["rank"])


def packing(sizes: dict, device: torch.device) -> list[dict]:
    """(b): aggregate samples/s of n packed processes against one."""
    rows = []
    for n in sizes["packed"]:
        got = run_packed(n, sizes, device)
        ok = [r for r in got if r.get("ok")]
        wall = max(r["end"] for r in got) - min(r["start"] for r in got if "start" in r)
        rows.append({"processes": n, "all_ok": len(ok) == n,
                     "aggregate_samples_per_s": sum(r["samples"] for r in ok) / wall,
                     "errors": [r["error"] for r in got if not r.get("ok")],
                     "peak_mb": [r.get("peak_mb") for r in ok]})
    one = rows[0]["aggregate_samples_per_s"]
    for row in rows:
        row["vs_one"] = row["aggregate_samples_per_s"] / one
    return rows


def oom_isolation(sizes: dict, device: torch.device) -> dict:
    """(c): rank 0 overflows its share; the others must finish."""
    got = run_packed(sizes["oom_procs"], sizes, device, oom_rank=0)
    return {"processes": len(got), "overflowing_error": got[0].get("error"),
            "overflowing_failed_with_oom": str(got[0].get("error", "")).startswith(
                "OutOfMemoryError"),
            "others_finished": all(r.get("ok") for r in got[1:]),
            "simulated": device.type != "cuda"}


def copies(sizes: dict, device: torch.device) -> dict:
    """(d): shuffled batches to the CPU against .cpu() of the same rows."""
    n = sizes["copy_rows"]
    x = torch.randn(n, 3, 16, 16, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    split = TensorSplit(x, y)
    batches = list(iterate_batches(split, 1024, shuffle=True, device="cpu",
                                   generator=torch.Generator(device).manual_seed(1)))
    order = torch.randperm(n, generator=torch.Generator(device).manual_seed(1), device=device)
    equal = all(xb.device.type == "cpu" and torch.equal(xb, x.index_select(0, idx).cpu())
                and torch.equal(yb, y.index_select(0, idx).cpu())
                for (xb, yb), idx in zip(batches, order.split(1024)))
    return {"batches": len(batches), "equal": equal}


def uint8_images(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A data factory (`data.factory`): n gray uint8 images of ten classes (noise around a
    class-dependent brightness), as MNIST-like files give them."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, size, size, generator=g) * 40 + 80 + 10 * y.view(-1, 1, 1)
    return x.clamp(0, 255).to(torch.uint8), y


def compact(sizes: dict, device: torch.device) -> dict:
    """(e): one factory's uint8 images loaded compact and as float32 on the device."""
    from trainers.datasets import load_data

    cfg = {"dataset": "factory", "factory": f"{__name__}:uint8_images",
           "kwargs": {"n": sizes["pixels"], "size": sizes["size"]}, "in_memory_mb": 8192.0}
    held = {True: load_data(cfg, device=device), False: load_data(cfg, device=device,
                                                                  compact=False)}
    batches = {form: iterate_batches(d.train, sizes["batch"], shuffle=True,
                                     generator=torch.Generator(device).manual_seed(5))
               for form, d in held.items()}
    equal = all(torch.equal(a, b) and torch.equal(ya, yb) for (a, ya), (b, yb) in
                zip(batches[True], batches[False], strict=True))
    row = {"samples": len(held[True].train), "equal": equal,
           "compact": held[True].train.compact and not held[False].train.compact,
           "train_mb": {"uint8": held[True].train.nbytes / 2 ** 20,
                        "float32": held[False].train.nbytes / 2 ** 20}}
    torch.manual_seed(0)
    model0 = build_model({"name": "cnn"}, in_channels=1, num_classes=10,
                         image_size=(sizes["size"], sizes["size"]))
    for form, name in ((True, "uint8"), (False, "float32")):
        got = fit(same_work(device, "fp32", sizes["epochs"], sizes["batch"]), data=held[form],
                  model=copy.deepcopy(model0).to(device))
        row[name] = {"fit_samples_per_s": settled([h["samples_per_sec"] for h in got.history]),
                     "val_accuracy": got.best_val_accuracy}
    row["ratio"] = row["uint8"]["fit_samples_per_s"] / row["float32"]["fit_samples_per_s"]
    return row


def table(report: dict) -> str:
    lines = [f"device {report['device']}  torch {report['torch']}  "
             f"{'quick (CPU)' if report['quick'] else 'full'}  {report['seconds']:.0f} s",
             "(a) precision  fit samples/s  loop samples/s  fit/loop"]
    for r in report["fit_vs_loop"]:
        lines.append(f"    {r['precision']:<9}  {r['fit_samples_per_s']:>13.0f}  "
                     f"{r['loop_samples_per_s']:>14.0f}  {r['ratio']:>8.3f}")
    lines.append("(b) processes  aggregate samples/s  vs one  all ok")
    for r in report["packing"]:
        lines.append(f"    {r['processes']:>9}  {r['aggregate_samples_per_s']:>18.0f}  "
                     f"{r['vs_one']:>6.2f}  {r['all_ok']}")
    o = report["oom"]
    lines.append(f"(c) overflowing process failed with OOM: {o['overflowing_failed_with_oom']}, "
                 f"the other {o['processes'] - 1} finished: {o['others_finished']}"
                 f"{' (simulated)' if o['simulated'] else ''}")
    c = report["copies"]
    lines.append(f"(d) GPU->CPU batches equal .cpu(): {c['equal']} ({c['batches']} batches)")
    e = report["compact"]
    lines.append(f"(e) uint8 held compact: batches equal float32's: {e['equal']}, train split "
                 f"{e['train_mb']['uint8']:.1f} MiB vs {e['train_mb']['float32']:.1f} MiB, fit "
                 f"samples/s {e['uint8']['fit_samples_per_s']:.0f} vs "
                 f"{e['float32']['fit_samples_per_s']:.0f} (uint8/float32 {e['ratio']:.3f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="the JSON report's path")
    ap.add_argument("--quick", action="store_true",
                    help="the CPU with tiny sizes (seconds): keeps the script tested")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    sizes = QUICK if args.quick else FULL
    if args.quick:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("error: no CUDA device visible to torch; use --quick on a CPU machine",
              file=sys.stderr)
        return 2
    report = {"quick": args.quick, "torch": torch.__version__, "python": platform.python_version(),
              "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "sizes": sizes,
              "fit_vs_loop": fit_vs_loop(sizes, device), "packing": packing(sizes, device),
              "oom": oom_isolation(sizes, device), "copies": copies(sizes, device),
              "compact": compact(sizes, device)}
    report["imported"] = sorted(m for m in FORBIDDEN if m in sys.modules)
    report["seconds"] = time.perf_counter() - started
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
