"""What makes written bytes durable on this machine's disk, and when the wait comes.

    .venv/bin/python bench/disk_flush.py [--dir DIR] [--runs 5]

No registry: the file calls a push makes, timed alone (docs/performance.md, "Pushes,
round four"). ``--dir`` should be on the disk the registry's data lives on (default:
a temporary folder under the current directory).

1. 128 MiB written in 1 MiB writes, then fsync: around the page cache (O_DIRECT),
   through it, and through it with ``sync_file_range(WRITE)`` every 8 MiB (what the
   upload writer does); MiB/s to durable, the writes' and the fsync's ms.
2. 256 MiB written at a push's pace (2.4 ms per MiB), what the last fsync waits
   for: the same paths, with and without an ``fdatasync`` of the file every 10 ms on
   another thread while it is written (what storage/flush_ahead.py does every 4 MiB).
3. The disk's ceiling for bench/compare.py's pushes (``--ceiling`` runs this alone):
   256 MiB into one file and 4 x 64 MiB into four at once, as fast as the writes
   go, by the registry's own upload-writer steps (writeback started every
   ``FLUSH_BEHIND``, ``FlushAhead``'s fdatasync every 4 MiB), then the file's
   fdatasync and the directory's fsync. No network, no hashing: no durable push can beat these.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from ociregistry.storage.durable import fsync_dir
from ociregistry.storage.filesystem import FLUSH_BEHIND
from ociregistry.storage.flush_ahead import FlushAhead

MiB = 1 << 20
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
SYNC_FILE_RANGE_WRITE = 2


def write_file(path: Path, mib: int, direct: bool, writeback: bool, pace: float,
               flush_loop: bool, block: mmap.mmap) -> tuple[float, float]:
    """Writes ``mib`` MiB; returns (ms writing, ms of the final fsync)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | (os.O_DIRECT if direct else 0))
    stop = threading.Event()

    def flush() -> None:
        while not stop.is_set():
            os.fdatasync(fd)
            time.sleep(0.01)

    flusher = threading.Thread(target=flush) if flush_loop else None
    try:
        if flusher:
            flusher.start()
        started = next_at = time.perf_counter()
        for i in range(mib):
            os.write(fd, block)
            if writeback and i % 8 == 7:
                _LIBC.sync_file_range(fd, (i - 7) * MiB, 8 * MiB, SYNC_FILE_RANGE_WRITE)
            if pace:
                next_at += pace
                time.sleep(max(0.0, next_at - time.perf_counter()))
        stop.set()
        if flusher:
            flusher.join()
        written = time.perf_counter()
        os.fsync(fd)
        return (written - started) * 1000, (time.perf_counter() - written) * 1000
    finally:
        stop.set()
        os.close(fd)
        path.unlink()


def flushed_ahead(path: Path, mib: int, block: mmap.mmap) -> None:
    """``mib`` MiB written as the registry's upload writer does (its writeback every
    ``FLUSH_BEHIND``, its ``FlushAhead``), then made durable."""
    ahead = FlushAhead(str(path), 0)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    try:
        started = 0
        for i in range(1, mib + 1):
            os.write(fd, block)
            if (i - started) * MiB >= FLUSH_BEHIND:
                _LIBC.sync_file_range(fd, started * MiB, (i - started) * MiB,
                                      SYNC_FILE_RANGE_WRITE)
                started = i
            ahead.wrote(i * MiB)
        os.fdatasync(fd)  # covers whatever a flush ahead still in flight has not
    finally:
        os.close(fd)


def ceiling(folder: Path, files: int, mib: int, block: mmap.mmap) -> float:
    """MiB/s to durable of ``files`` files of ``mib`` MiB written at once."""
    paths = [folder / f"ceiling{i}" for i in range(files)]
    writers = [threading.Thread(target=flushed_ahead, args=(p, mib, block)) for p in paths]
    started = time.perf_counter()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    fsync_dir(str(folder))
    took = time.perf_counter() - started
    for p in paths:
        p.unlink()
    return files * mib / took


def print_ceilings(folder: Path, runs: int, block: mmap.mmap) -> None:
    print(f"the disk's ceiling for a durable push, as the upload writer writes ({runs} runs)")
    for files, mib in ((1, 256), (4, 64)):
        rates = []
        for _ in range(runs):
            rates.append(ceiling(folder, files, mib, block))
            time.sleep(0.3)
        print(f"  {files} x {mib} MiB: median {statistics.median(rates):5.0f} MiB/s durable"
              f" ({min(rates):.0f}-{max(rates):.0f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=Path.cwd())
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--ceiling", action="store_true", help="only part 3, the push ceilings")
    args = p.parse_args(argv)
    block = mmap.mmap(-1, MiB)  # page-aligned, as O_DIRECT needs
    block.write(os.urandom(MiB))
    if args.ceiling:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            print_ceilings(Path(tmp), args.runs, block)
        return 0
    paths = {"around the cache (O_DIRECT)": (True, False),
             "through the cache": (False, False),
             "through the cache, writeback every 8 MiB": (False, True)}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        target = Path(tmp) / "file"
        print(f"{args.dir}: 128 MiB, then fsync ({args.runs} runs, medians)")
        for name, (direct, writeback) in paths.items():
            runs = [write_file(target, 128, direct, writeback, 0, False, block)
                    for _ in range(args.runs)]
            total = statistics.median(w + f for w, f in runs)
            print(f"  {name:42s} {128 / total * 1000:6.0f} MiB/s durable;"
                  f" writes {statistics.median(w for w, _ in runs):5.0f} ms,"
                  f" fsync {statistics.median(f for _, f in runs):5.0f} ms")
        print("256 MiB at 2.4 ms per MiB: what the last fsync waits for")
        for name, (direct, writeback) in paths.items():
            for flush_loop in (False, True):
                runs = [write_file(target, 256, direct, writeback, 0.0024, flush_loop, block)
                        for _ in range(args.runs)]
                label = name + (", fdatasync every 10 ms" if flush_loop else "")
                print(f"  {label:64s} writes {statistics.median(w for w, _ in runs):5.0f} ms,"
                      f" last fsync {statistics.median(f for _, f in runs):5.0f} ms")
        print_ceilings(Path(tmp), args.runs, block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
