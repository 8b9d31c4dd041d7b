"""SQLite writers queue in the kernel instead of sleeping in SQLite's busy handler.

SQLite has one write lock per database. A ``BEGIN IMMEDIATE`` that finds it
taken does not wait for it to be released: the busy handler sleeps 1, 2, 5, 10,
15, 20 ms ... and retries, so a writer that arrives while another commits loses
up to tens of ms after the lock has long been free, and under load (gunicorn's
workers x threads all pushing) writers pile up in those sleeps.

Before ``BEGIN IMMEDIATE`` each write transaction therefore takes, in turn:

1. a per-process ``threading.Lock``: the threads of one worker queue on it (a
   futex, woken by the release);
2. an exclusive ``flock`` on ``<database>.writers``: the workers queue in the
   kernel, which wakes the next the moment the holder unlocks (or dies: the
   kernel drops a dead process's flock).

Both are released right after COMMIT or ROLLBACK, on every path (``hold()`` is
a context manager around the whole transaction), before the WAL flush
(wal_sync.py). SQLite's own locking stays what guarantees correctness; this
queue only orders the writers so that they rarely meet there. Hence it never
blocks for ever: a waiter gives up after the busy timeout and goes on without
it (SQLite's busy handling then applies as before), and a thread that already
holds it (a write inside a write) does not take it again.

flock has no timeout: a waiter whose non-blocking attempt fails waits in a
helper thread for at most the timeout; if the helper gets the lock after the
waiter gave up, it unlocks at once (the next writer that finds it still blocked
takes it over: one such thread per process, however long a holder is stuck).
Every acquisition opens its own file description (flock locks belong to one;
a forked child must never share its parent's). Without fcntl (Windows) only the
thread lock is taken. PostgreSQL needs none of this (row locks wait in the server).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("ociregistry")
SUFFIX = ".writers"
_QUEUES: dict[str, WriterQueue] = {}
_QUEUES_LOCK = threading.Lock()


class WriterQueue:
    """Orders one SQLite database's write transactions across threads and processes."""

    def __init__(self, lock_path: str | None, timeout: float) -> None:
        self.path = lock_path if fcntl is not None else None
        self.timeout = timeout
        self._thread_lock = threading.Lock()
        self._pid = os.getpid()
        self._local = threading.local()
        self._pending: _Waiter | None = None  # a given-up wait still blocked (thread lock's)
        self._helper: _Helper | None = None  # the thread that waits in flock (started lazily)
        self.gave_up = 0  # waits that timed out (tests; a sign of a stuck holder)
        # Told of each timed-out wait; runtime.py wires the metric.
        self.on_gave_up: Callable[[], Any] | None = None

    @classmethod
    def for_url(cls, url: str, timeout: float) -> WriterQueue | None:
        """The queue of a SQLite database (file or not), None for PostgreSQL."""
        if not url.startswith("sqlite"):
            return None
        import sqlalchemy as sa

        database = sa.engine.make_url(url).database
        if not database or database == ":memory:" or database.startswith("file:"):
            return cls(None, timeout)
        # One queue per database and process, whichever store asks: a write inside
        # a write through another store on the same thread is still seen as nested.
        path = os.path.abspath(database) + SUFFIX
        with _QUEUES_LOCK:
            queue = _QUEUES.get(path)
            if queue is None:
                queue = _QUEUES[path] = cls(path, timeout)
            return queue

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the queue's head for the block (a write transaction)."""
        if getattr(self._local, "held", False):
            yield  # a write inside a write on this thread: already ours
            return
        if self._pid != os.getpid():
            # A forked child: the parent's thread lock may have been copied taken.
            self._thread_lock, self._pid = threading.Lock(), os.getpid()
            self._pending = None  # the parent's helper thread is not in this process
            self._helper = None
        thread_lock = self._thread_lock
        deadline = time.monotonic() + self.timeout
        has_thread = thread_lock.acquire(timeout=self.timeout)
        fd = None
        try:
            if not has_thread:
                self._gave_up()
            elif self.path is not None:
                fd = self._lock_file(deadline)
            self._local.held = True
            yield
        finally:
            self._local.held = False
            if fd is not None:
                _unlock(fd)
            if has_thread:
                thread_lock.release()

    def _gave_up(self) -> None:
        self.gave_up += 1
        log.warning("a SQLite write waited %.0f s for the writer queue and goes on without "
                    "it (a writer holding it is stuck?)", self.timeout)
        if self.on_gave_up is not None:
            self.on_gave_up()

    def _lock_file(self, deadline: float) -> int | None:
        """A descriptor holding the exclusive flock, or None after the timeout."""
        assert self.path is not None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return None  # e.g. a read-only directory: SQLite's busy handler, as before
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        except OSError:
            os.close(fd)  # a file system without flock: go on as before
            return None
        # A wait given up earlier may still be blocked in flock (a stuck holder):
        # take it over rather than adding a thread and a descriptor per write.
        waiter = self._pending
        if waiter is not None and waiter.adopt():
            os.close(fd)
        else:
            waiter = _Waiter(fd)
            if self._helper is None or not self._helper.submit(waiter):
                self._helper = _Helper()
                self._helper.submit(waiter)
        self._pending = None
        if waiter.wait(max(0.0, deadline - time.monotonic())):
            return waiter.fd
        self._pending = waiter
        self._gave_up()
        return None


class _Helper:
    """The thread per queue and process that waits in flock for the writers.

    A thread started per wait cost its creation and teardown (clone, a stack mapped
    and unmapped) on most writes under load, when the lock is usually taken; this
    one lives on while there are waits (it leaves after ``IDLE`` seconds without).
    It serves one wait at a time, which is all there is: the waiting thread holds
    the process's thread lock, and a wait given up while still blocked is taken over
    by the next writer instead of adding another (``_pending``).
    """

    IDLE = 30.0

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Waiter] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._alive = True
        self.thread = threading.Thread(target=self._serve, name="sqlite-writer-wait",
                                       daemon=True)
        self.thread.start()

    def submit(self, waiter: _Waiter) -> bool:
        """Hand ``waiter`` to the thread; False when it has left (start another)."""
        with self._guard:
            if not self._alive:
                return False
            self._jobs.put(waiter)
            return True

    def _serve(self) -> None:
        while True:
            try:
                waiter = self._jobs.get(timeout=self.IDLE)
            except queue.Empty:
                with self._guard:
                    if self._jobs.empty():
                        self._alive = False
                        return
                continue
            try:
                waiter.run()
            except Exception:  # an unlock that failed: this thread must serve the next
                log.exception("the SQLite writer queue's helper failed a wait")


class _Waiter:
    """A blocking flock in the helper thread, which the caller may stop waiting for."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._done = threading.Event()
        self._guard = threading.Lock()
        self._abandoned = False
        self._locked = False

    def run(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            locked = True
        except OSError:
            locked = False
        with self._guard:
            self._locked = locked
            if self._abandoned:
                # The caller went on without it: hand the lock straight on.
                _unlock(self.fd) if locked else os.close(self.fd)
            self._done.set()

    def adopt(self) -> bool:
        """Wait for this lock again (it was given up); False if it has finished."""
        with self._guard:
            if self._done.is_set():
                return False
            self._abandoned = False
            return True

    def wait(self, timeout: float) -> bool:
        """True when the lock is held (then the caller owns fd), else fd is the helper's."""
        self._done.wait(timeout)
        with self._guard:
            if self._done.is_set():
                if not self._locked:
                    os.close(self.fd)
                return self._locked
            self._abandoned = True
            return False


def _unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
