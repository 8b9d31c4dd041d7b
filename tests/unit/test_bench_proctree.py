"""bench/proctree.py: the memory the harness reports is what the process tree held.

The sampler reads RSS from the kernel's counters every tick and PSS (page-table
walk) only once RSS has grown 2 MiB or once a second; a peak that lasts a few ticks
must still be caught in both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bench.proctree import MiB, TreeMonitor, tree_memory

# A child that holds 64 MiB of touched memory for 0.4 s, after a grandchild starts.
HOLDER = """
import subprocess, sys, time
sub = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
time.sleep(0.6)
block = bytearray(64 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
time.sleep(0.4)
del block
print("freed", flush=True)
time.sleep(30)
"""


def test_monitor_catches_a_short_peak_in_rss_and_pss() -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        time.sleep(0.3)
        idle_rss, idle_pss = tree_memory(proc.pid)
        monitor = TreeMonitor(proc.pid).start()
        assert proc.stdout is not None and proc.stdout.readline().strip() == "freed"
        time.sleep(0.2)
        monitor.stop()
        after_rss, _ = tree_memory(proc.pid)
        # The peak held the block; once freed the tree is back near idle.
        assert monitor.peak_rss - idle_rss >= 60 * MiB
        assert monitor.peak_pss - idle_pss >= 60 * MiB
        assert after_rss < monitor.peak_rss - 48 * MiB
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its grandchild
        proc.wait()
