"""The watchdog's walk down the driver's process tree finds what a scan of /proc finds."""
from __future__ import annotations

import os
import subprocess
import sys

from search.cluster.reaper import children, descendants, scan_descendants, stat_of


def test_walk_finds_grandchildren_as_the_scan_does():
    # a child that starts a grandchild, both sleeping until killed
    child = subprocess.Popen([sys.executable, "-c",
                              "import subprocess, sys, time; "
                              "subprocess.Popen(['sleep', '30']); print('up', flush=True); "
                              "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "up"
        assert children(os.getpid()) is not None, "this kernel lists /proc/PID/task/TID/children"
        walked = descendants(os.getpid())
        assert child.pid in walked and len(walked) >= 2  # the child and its sleep
        assert walked[child.pid] == stat_of(child.pid)[1]
        scanned = scan_descendants(os.getpid())
        assert {p: s for p, s in scanned.items() if p in walked} == walked
        assert set(walked) <= set(scanned)
        grandchild = [p for p in walked if stat_of(p)[0] == child.pid]
        assert grandchild and grandchild[0] in scanned
        assert children(2 ** 22 + 7) == []  # no such process: nothing below it
    finally:
        for pid in descendants(child.pid):
            os.kill(pid, 9)
        child.kill()
        child.wait()
