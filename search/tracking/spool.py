"""Every MLflow write as a small JSON operation, applied at once or, while the backend is
unreachable, appended to a local spool (JSONL) and replayed in order when it is back.

Operations name runs by key (runs.py), never by id, so a spooled "create the run" and the writes
after it replay in another process (`search sync`) as well. Replay is idempotent: runs are found
by tags before being created, metric timestamps are fixed when the write is made (MLflow drops an
identical metric row) and steps already stored are skipped, params are re-logged with the same
value, artifacts overwrite, terminations repeat harmlessly.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from search.errors import UserError

from .backend import WRITE_HTTP, http_limits, is_unreachable, probe
from .runs import Book

log = logging.getLogger("search.tracking")

MAX_METRICS = 1000   # MLflow's log_batch limits
MAX_PARAMS_TAGS = 100


def now_ms() -> int:
    return int(time.time() * 1000)


class Spool:
    """An append-only JSONL file of operations, locked against a concurrent `search sync`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, op: dict) -> None:
        with self.locked(), open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(op, allow_nan=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def rewrite(self, ops: list[dict]) -> None:
        """Keep only `ops` (those not replayed yet); atomic, so a crash loses nothing."""
        if not ops:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(op, allow_nan=True) + "\n" for op in ops)
        os.replace(tmp, self.path)

    def __len__(self) -> int:
        return len(self.read())


# ----------------------------------------------------------------------------- operations
def _run(book: Book, op: dict) -> str:
    return book.ensure(op["key"], op["name"], op.get("tags", {}), op.get("parent"),
                       op.get("start_time"))


def _batch(book: Book, op: dict) -> None:
    from mlflow.entities import Metric, Param, RunTag

    run_id = book.run_id(op["key"])
    seen = book.seen.setdefault(run_id, {})
    metrics = []
    for key, value, ts, step in op.get("metrics", []):
        if step <= seen.get(key, -1):
            continue  # stored already (a replay, or a resumed trial re-reporting an epoch)
        metrics.append(Metric(key, float(value), int(ts), int(step)))
    pairs = [Param(k, v) for k, v in op.get("params", {}).items()] + \
            [RunTag(k, v) for k, v in op.get("tags", {}).items()]
    for i in range(0, max(len(metrics), 1), MAX_METRICS):
        chunk = metrics[i:i + MAX_METRICS]
        if chunk:
            book.client.log_batch(run_id, metrics=chunk)
    for i in range(0, len(pairs), MAX_PARAMS_TAGS):
        chunk = pairs[i:i + MAX_PARAMS_TAGS]
        book.client.log_batch(run_id, params=[p for p in chunk if isinstance(p, Param)],
                              tags=[t for t in chunk if isinstance(t, RunTag)])
    for m in metrics:
        seen[m.key] = max(seen.get(m.key, -1), m.step)


def _text(book: Book, op: dict) -> None:
    book.client.log_text(book.run_id(op["key"]), op["text"], op["path"])


def _artifact(book: Book, op: dict) -> None:
    local = Path(op["local"])
    run_id = book.run_id(op["key"])
    if local.is_dir():
        book.client.log_artifacts(run_id, str(local), op.get("path"))
    elif local.is_file():
        book.client.log_artifact(run_id, str(local), op.get("path"))
    else:
        raise FileNotFoundError(f"{local} no longer exists")


def _delete(book: Book, op: dict) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from search.urls import reveal

    run = book.client.get_run(book.run_id(op["key"]))
    repo = get_artifact_repository(run.info.artifact_uri,
                                   tracking_uri=reveal(book.uri))
    try:
        repo.delete_artifacts(op["path"])
    except Exception as err:  # already gone counts as done
        if "404" not in str(err) and "not exist" not in str(err).lower():
            raise


def _end(book: Book, op: dict) -> None:
    run_id = book.run_id(op["key"])
    book.client.set_terminated(run_id, op["status"], op.get("end_time"))
    if op.get("name"):  # the name that says how it ended: "trial-007 (pruned)"
        book.client.update_run(run_id, name=op["name"])


def _model(book: Book, op: dict) -> Any:
    from .registry import apply_model_op

    return apply_model_op(book, op)


OPS: dict[str, Callable[[Book, dict], Any]] = {
    "run": _run, "batch": _batch, "text": _text, "artifact": _artifact, "delete": _delete,
    "end": _end, "model": _model,
}


class Writer:
    """Applies operations to the backend, or spools them. Once one write is spooled, every
    later write is spooled too until a replay empties the spool, so their order is kept."""

    def __init__(self, book: Book, spool: Spool, *, retry_every: float = 30.0) -> None:
        self.book, self.spool, self.retry_every = book, spool, retry_every
        self._last_try = 0.0
        self._down = len(self.spool) > 0  # a spool left by an earlier run must go first
        self.dropped: list[tuple[dict, str]] = []

    @property
    def down(self) -> bool:
        return self._down

    def write(self, op: dict) -> Any:
        """The operation's result (a run id for "run"), or None when spooled or refused."""
        if self._down:
            self.spool.append(op)
            return None
        try:
            return self._apply(op)
        except Exception as err:
            if is_unreachable(err):
                self.go_down(err)
                self.spool.append(op)
            else:
                self._refused(op, err)
            return None

    def _apply(self, op: dict) -> Any:
        with http_limits(WRITE_HTTP):
            return OPS[op["op"]](self.book, op)

    def go_down(self, err: BaseException) -> None:
        self._down, self._last_try = True, time.monotonic()
        log.warning("tracking backend unreachable (%s); writes are spooled to %s and replayed "
                    "when it is back (or run `search sync`)", str(err).splitlines()[0][:200],
                    self.spool.path)

    def _refused(self, op: dict, err: BaseException) -> None:
        reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else repr(err)
        self.dropped.append((op, reason))
        log.warning("tracking: %s for %s skipped (retrying cannot help): %s", op["op"],
                    op.get("key"), reason)

    def replay(self) -> tuple[int, int]:
        """Apply the spool in order; returns (applied, left). Stops at the first write the
        backend cannot take and keeps it and the rest for the next try."""
        self._last_try = time.monotonic()
        try:
            probe(self.book.uri)
        except UserError:
            self._down = True
            return 0, len(self.spool)
        with self.spool.locked():
            ops = self.spool.read()
            for i, op in enumerate(ops):
                try:
                    self._apply(op)
                except Exception as err:
                    if is_unreachable(err):
                        self.spool.rewrite(ops[i:])
                        self._down = True
                        return i, len(ops) - i
                    self._refused(op, err)
            self.spool.rewrite([])
        self._down = False
        return len(ops), 0

    def maybe_replay(self) -> None:
        """Called often (every Tune step): retries a spooled backend every `retry_every` s."""
        if self._down and time.monotonic() - self._last_try >= self.retry_every:
            applied, left = self.replay()
            if not left:
                log.warning("tracking backend is back: %d spooled writes replayed", applied)
