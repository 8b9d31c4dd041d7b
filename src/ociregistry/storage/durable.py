"""Flushing a file and the directories that name it to the disk at the same time.

Publishing a blob needs its bytes (the upload file's fsync) and its name (an fsync
of the directory holding the new link, and of a directory's parent when that
directory was just made) on the disk before the index transaction records it.
Nothing needs one of these flushes to end before another starts: a name whose
bytes are not yet durable is harmless until a row records it (readers, mounts,
GC and the consistency check all go by the row; an unrecorded file under a blob's
name is replaced by the next push of that digest and removed by GC). So they run
together, one on the calling thread and the rest on a small pool: a journalling
file system commits them in one journal transaction (one disk round trip instead
of two or three in a row), and wherever it does not they still overlap. The
caller goes on only when every one of them has succeeded.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

# Directory flushes in flight at once: as many as requests may publish at once (gunicorn
# threads), so that none waits for a free thread (threads are started only as needed).
POOL_THREADS = 32


class ProcessPool:
    """A thread pool made on first use in each process: a forked child (gunicorn's
    workers) has the parent's object but not its threads."""

    def __init__(self, threads: int, name: str) -> None:
        self.threads = threads
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __call__(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
                self._pid = os.getpid()
            return self._pool


executor = ProcessPool(POOL_THREADS, "fsync-dir")


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_together(fd: int, directories: list[str]) -> None:
    """fsync ``fd`` and each of ``directories``, concurrently; returns once all are
    done, raising the first failure (after every flush has ended either way)."""
    if not directories:
        os.fsync(fd)
        return
    pool = executor()
    futures: list[Future[None]] = []
    inline: list[str] = []
    for directory in dict.fromkeys(directories):
        try:
            futures.append(pool.submit(fsync_dir, directory))
        except RuntimeError:
            # The interpreter is exiting (a worker's graceful stop: concurrent.futures
            # takes no new work while the requests still in flight finish): in a row.
            inline.append(directory)
    error: BaseException | None = None
    try:
        os.fsync(fd)
        for directory in inline:
            fsync_dir(directory)
    except BaseException as exc:  # noqa: BLE001 - raised once the others have ended
        error = exc
    for future in futures:
        try:
            future.result()
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
    if error is not None:
        raise error
