"""Pull statistics without a write per pull: a buffer per worker process, flushed.

A manifest GET (never a HEAD) adds one to its tag's and its manifest's counters
in this process's memory (a lock and two dict updates). A background thread
writes the buffer every ``interval`` seconds in one transaction of upserts
(count += n, last = max), and once more when the process exits normally
(gunicorn's graceful stop, SIGTERM, runs ``atexit``). What a crash loses: the
pulls this process served since its last flush (at most ``interval`` seconds'
worth); a failed flush keeps its counts for the next one.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from ociregistry import metrics
from ociregistry.metadata import pull_stats_queries as q
from ociregistry.metadata.store import MetadataStore

log = logging.getLogger("ociregistry.pulls")

# Distinct keys held before a flush is asked for early (bounds memory under a pull storm
# over very many tags); counts are never dropped.
MAX_KEYS = 20000


class PullRecorder:
    def __init__(self, store: MetadataStore, interval: float = 5.0) -> None:
        self.store = store
        self.interval = interval
        self._lock = threading.Lock()
        self._tags: q.Counts = {}
        self._manifests: q.Counts = {}
        self._pid: int | None = None  # the process whose flusher runs
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushes = 0

    # -- the hot path -----------------------------------------------------------
    def record(self, repository: str, tag: str | None, digest: str) -> None:
        """One manifest GET of ``repository`` by ``tag`` (None: by digest), served ``digest``."""
        now = time.time()
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            if tag is not None:
                n, _ = self._tags.get((repository, tag), (0, 0.0))
                self._tags[(repository, tag)] = (n + 1, now)
            n, _ = self._manifests.get((repository, digest), (0, 0.0))
            self._manifests[(repository, digest)] = (n + 1, now)
            full = len(self._tags) + len(self._manifests) >= MAX_KEYS
        if full:
            self._wake.set()

    def _start(self) -> None:
        # Started on the first pull of each process: a forked worker never inherits a
        # thread, and a process that serves no pull has none.
        self._pid = os.getpid()
        self._tags, self._manifests = {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pull-stats", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the background ---------------------------------------------------------
    def _loop(self) -> None:
        stop = self._stop
        while not stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write what is buffered; the number of keys written."""
        with self._lock:
            tags, manifests = self._tags, self._manifests
            self._tags, self._manifests = {}, {}
        if not tags and not manifests:
            return 0
        try:
            q.flush(self.store, tags, manifests)
        except Exception:
            metrics.PULL_FLUSHES.labels("error").inc()
            log.exception("could not write pull statistics; kept for the next flush")
            with self._lock:
                _merge(self._tags, tags)
                _merge(self._manifests, manifests)
            return 0
        self.flushes += 1
        metrics.PULL_FLUSHES.labels("success").inc()
        return len(tags) + len(manifests)

    def close(self) -> None:
        """Stop the flusher and write what is left (at process exit)."""
        self._stop.set()
        self._wake.set()
        if self._pid == os.getpid():
            self.flush()


def _merge(into: q.Counts, counts: q.Counts) -> None:
    for key, (n, at) in counts.items():
        old_n, old_at = into.get(key, (0, 0.0))
        into[key] = (old_n + n, max(old_at, at))
