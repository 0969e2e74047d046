"""One seed's training of a trial with budget.seeds > 1 (seeds.py), in a Ray actor of its own.
Imported by the actor's process: it needs the training function and the fields of a result,
not Ray Tune (a second of imports per seed)."""
from __future__ import annotations

import os
import queue
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from search.cluster import gpus
from search.lifecycle.usercode import fit_keywords, fit_result, resolve_fit
from search.tune.keys import FINAL_PREFIX
from search.tune.outcome import clean, final_fields, known_failure, one_line, out_of_memory

EPOCH, DONE = "epoch", "done"
OOM, KNOWN, ERROR = "oom", "known", "error"  # how a seed failed


class SeedRun:
    """One seed's training, in its own Ray actor: fit runs in a thread and `next()` hands out
    its events in order: (EPOCH, metrics, changed files), (DONE, final fields, history,
    changed files), or (kind, one line) when it failed."""

    def __init__(self, plan: Any, settings: dict, restore: dict[str, bytes]):
        if not plan.resources.gpu:  # Ray leaves CUDA_VISIBLE_DEVICES alone for GPU-less tasks
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        self.events: queue.Queue = queue.Queue()
        self.work = Path(tempfile.mkdtemp(prefix="search-seed-"))
        for name, data in restore.items():
            (self.work / name).write_bytes(data)
        self.seen: dict[str, tuple[int, int]] = {}
        threading.Thread(target=self._train, args=(plan, settings), daemon=True).start()

    def next(self) -> tuple:
        return self.events.get()

    def _changed(self) -> dict[str, bytes]:
        out = {}
        for path in self.work.iterdir():
            stat = path.stat()
            if path.is_file() and self.seen.get(path.name) != (stat.st_mtime_ns, stat.st_size):
                self.seen[path.name] = (stat.st_mtime_ns, stat.st_size)
                out[path.name] = path.read_bytes()
        return out

    def _report(self, metrics: dict) -> bool:
        self.history.append(clean(metrics))
        self.events.put((EPOCH, clean(metrics), self._changed()))
        return False

    def _train(self, plan: Any, settings: dict) -> None:
        self.history: list[dict] = []
        try:
            fit = resolve_fit(plan.fit)
            torch = sys.modules.get("torch")
            if torch is not None:
                torch.set_num_threads(plan.resources.threads)
            gpus.trial_setup(plan, settings)
            last = self.work / "last.pt"
            self._changed()  # the restored files are the trial's already
            result = fit(settings, **fit_keywords(fit, dict(
                report=self._report, checkpoint_dir=str(self.work),
                resume_from=str(last) if last.is_file() else None,
                cpus=plan.resources.threads)))
            result = fit_result(result, self.history)
            fields = {**final_fields(result, plan.objectives, ""), **gpus.device_fields(result)}
            if any(o.metric == "latency_ms" for o in plan.objectives):
                from search.lifecycle.latency import latency_ms

                fields[FINAL_PREFIX + "latency_ms"] = latency_ms(
                    settings, getattr(result, "checkpoint", None), plan.resources.threads)
            history = [clean(r) for r in getattr(result, "history", None) or []]
            self.events.put((DONE, fields, history, self._changed()))
        except BaseException as err:  # noqa: BLE001 - every failure goes to the trial
            kind = OOM if out_of_memory(err) else KNOWN if known_failure(err) else ERROR
            self.events.put((kind, one_line(err)))
        finally:
            gpus.trial_cleanup()
            shutil.rmtree(self.work, ignore_errors=True)
