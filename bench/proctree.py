"""CPU time and memory of a process and all its descendants, read from /proc (Linux).

CPU: the sum over the live tree of utime + stime + cutime + cstime. A child that
exits and is reaped hands its time (and its own reaped children's) to its parent's
cutime/cstime, so every tick is counted once, whichever worker did the work.

Memory: a sampler thread sums RSS over the tree every 50 ms and PSS (which shares
copy-on-write pages fairly between gunicorn's forked workers) once RSS has grown
by 2 MiB since the last read, or once a second, and keeps the peaks, overall and
for the current phase. RSS comes from /proc/<pid>/statm, the kernel's counters;
PSS needs smaps_rollup, which walks the process's page tables under its mmap lock:
3.8 ms of CPU for our three processes against 0.5 for Distribution's one, so read
20 times a second it took 7.6 % of a core (and the lock) from the registry being
measured (docs/performance.md, "What is measured, and how": Resources).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20
# PSS is read again once RSS has grown this much since the last read (else each
# tick while a registry's caches fill would walk the page tables again).
PSS_STEP = 2 * MiB


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat from field 3 (state) on; the name may hold spaces."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2:].decode().split()


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat_fields(int(entry))[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, ()))
    return pids


def tree_cpu_seconds(root: int) -> float:
    ticks = 0
    for pid in tree_pids(root):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / HZ


def _rss_pss(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_memory(root: int, pids: list[int] | None = None) -> tuple[int, int]:
    """(RSS, PSS) in bytes summed over the tree."""
    rss = pss = 0
    for pid in pids or tree_pids(root):
        r, p = _rss_pss(pid)
        rss += r
        pss += p
    return rss, pss


@dataclass
class Phase:
    """What the tree spent while a `with monitor.phase()` block ran."""

    cpu: float = 0.0  # seconds
    wall: float = 0.0  # seconds
    peak_rss: int = 0  # bytes


class TreeMonitor:
    def __init__(self, root: int, interval: float = 0.05, pss_every: float = 1.0) -> None:
        self.root = root
        self.interval = interval
        self.pss_every = pss_every  # seconds between PSS reads unless RSS grew PSS_STEP
        self.peak_rss = self.peak_pss = self.phase_peak = 0
        self._pids = [root]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TreeMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last_scan = last_pss = 0.0
        pss_read_at = 0  # the tree's RSS when PSS was last read
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_scan > 1.0:  # the tree rarely changes; rescan once a second
                self._pids = tree_pids(self.root)
                last_scan = now
            rss = sum(_rss(pid) for pid in self._pids)
            if rss > pss_read_at + PSS_STEP or now - last_pss >= self.pss_every:
                self.peak_pss = max(self.peak_pss, tree_memory(self.root, self._pids)[1])
                last_pss, pss_read_at = now, rss
            self.peak_rss = max(self.peak_rss, rss)
            self.phase_peak = max(self.phase_peak, rss)
            self._stop.wait(self.interval)

    @contextmanager
    def phase(self) -> Iterator[Phase]:
        result = Phase()
        self.phase_peak = 0
        cpu0, t0 = tree_cpu_seconds(self.root), time.perf_counter()
        yield result
        result.wall = time.perf_counter() - t0
        result.cpu = tree_cpu_seconds(self.root) - cpu0
        result.peak_rss = max(self.phase_peak, tree_memory(self.root)[0])
