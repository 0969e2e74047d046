"""No Ray process of ours outlives its driver, even one killed with SIGKILL.

A local Ray started by a run (search/cluster/connect.py) is a tree of processes under the driver: GCS,
raylet, dashboard and runtime-env agents, workers. Ray ends some of them when the driver dies,
not all (its agents stay). `watch()` starts a small watchdog in a session of its own (a signal
to the driver's process group does not reach it) that notes the driver's descendants every
half second and, once the driver is gone, kills those still alive (the same processes: their
start time is checked, so a reused pid is left alone), then exits. A process Ray forks after
the last look dies with its raylet. A driver that ends normally stops the watchdog after
`ray.shutdown`.

Run as `python -m search.cluster.reaper DRIVER_PID`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL = 0.5


def stat_of(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19])


def children(pid: int) -> list[int] | None:
    """The children of `pid` from its threads' /proc/PID/task/TID/children (a forking thread
    is the parent), or None where the kernel has no such file (CONFIG_PROC_CHILDREN)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # gone
    found: list[int] = []
    for tid in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except FileNotFoundError:
            if not Path(f"/proc/{pid}/task/{tid}").exists():
                continue  # the thread ended meanwhile
            return None
        except OSError:
            continue
    return found


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every live process below `root`: a walk down from `root`, which
    reads only the tree's own files. On a shared host a scan of every process in /proc twice a
    second costs the watchdog a tenth of a core, taken from the run; the scan stays as the
    fallback where the kernel lists no children."""
    found, todo = {}, [root]
    while todo:
        kids = children(todo.pop())
        if kids is None:
            return scan_descendants(root)
        for child in kids:
            stat = stat_of(child)
            if stat is not None and child not in found and child != os.getpid():
                found[child] = stat[1]
                todo.append(child)
    return found


def scan_descendants(root: int) -> dict[int, int]:
    """descendants() from a scan of every process in /proc."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = stat_of(int(entry))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry))
                starts[int(entry)] = stat[1]
    found, todo = {}, [root]
    while todo:
        for child in parents.get(todo.pop(), ()):
            if child not in found and child != os.getpid():
                found[child] = starts[child]
                todo.append(child)
    return found


def zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2:].split()[0] == "Z"


def reap(known: dict[int, int]) -> int:
    """Kill what is left of a dead driver's Ray; how many processes were killed."""
    victims = {pid for pid, start in known.items()
               if (stat_of(pid) or (0, -1))[1] == start and not zombie(pid)}
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(victims)


def main(driver: int) -> None:
    """Watch `driver` until it dies, then kill what is left of its Ray."""
    start = (stat_of(driver) or (0, -1))[1]
    known: dict[int, int] = {}
    while (stat_of(driver) or (0, -2))[1] == start and not zombie(driver):
        known.update(descendants(driver))
        known = {pid: s for pid, s in known.items() if (stat_of(pid) or (0, -1))[1] == s}
        time.sleep(POLL)
    reap(known)


def watch() -> subprocess.Popen | None:
    """Start the watchdog of this process (Linux only; elsewhere None)."""
    if not Path("/proc/self/stat").exists():
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "search.cluster.reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main(int(sys.argv[1]))
