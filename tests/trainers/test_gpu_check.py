"""bench/gpu_check.py in its quick mode (the CPU, tiny sizes): the script a lent GPU machine
runs must not rot between the sessions that have one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gpu_check_runs_quick_on_the_cpu_with_torch_alone(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--quick",
                           "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["quick"] and report["device"] == "cpu"
    assert report["imported"] == []  # neither Ray, Optuna, MLflow, search nor spaces
    assert [r["precision"] for r in report["fit_vs_loop"]] == ["fp32", "bf16"]
    assert all(r["fit_samples_per_s"] > 0 and r["loop_samples_per_s"] > 0 and
               r["device"] == {"device": "cpu"} for r in report["fit_vs_loop"])
    assert [r["processes"] for r in report["packing"]] == [1, 2]
    assert all(r["all_ok"] and r["aggregate_samples_per_s"] > 0 for r in report["packing"])
    assert report["oom"] == {"processes": 2, "overflowing_failed_with_oom": True,
                             "others_finished": True, "simulated": True,
                             "overflowing_error": "OutOfMemoryError: simulated on the CPU "
                                                  "(--quick)"}
    assert report["copies"]["equal"] and report["copies"]["batches"] == 4
    assert "(d) GPU->CPU batches equal .cpu(): True" in done.stdout
    compact = report["compact"]  # (e): uint8 on the device, the float32 batches bit for bit
    assert compact["equal"] and compact["compact"] and compact["samples"] > 1000
    assert compact["train_mb"]["uint8"] * 4 == pytest.approx(compact["train_mb"]["float32"])
    assert compact["uint8"]["fit_samples_per_s"] > 0 and compact["float32"]["fit_samples_per_s"] > 0
    assert compact["uint8"]["val_accuracy"] == compact["float32"]["val_accuracy"]  # the CPU
    assert "(e) uint8 held compact: batches equal float32's: True" in done.stdout
