"""Manifest pulls as events, without a database write on the request.

A GET of a manifest (never a HEAD) adds to an in-process buffer: a dict keyed by
(repository, digest, reference, caller), with a count. A background thread
writes the buffer every ``batch_seconds`` as "manifest.pulled" events (one per
key, ``details.count`` pulls, first and last time) in one transaction. With
``batch_seconds: 0`` every pull is its own event, still written by that thread.
``sample_rate`` below 1 records that fraction of pulls. What the buffer holds
when a process is killed is lost: pulls are statistics, not changes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from ociregistry.core.actor import acting_as, current_actor
from ociregistry.metadata.store import MetadataStore

log = logging.getLogger("ociregistry.events")
MAX_KEYS = 10000  # a flood of distinct pulls is written early rather than grow


class PullBuffer:
    def __init__(self, store: MetadataStore, batch_seconds: float, sample_rate: float) -> None:
        self.store = store
        self.batch = batch_seconds
        self.sample = sample_rate
        self._lock = threading.Lock()
        self._pending: dict[tuple, list[Any]] = {}
        self._seq = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, repository: str, reference: str, digest: str, media_type: str,
               size: int) -> None:
        if self.sample < 1 and random.random() >= self.sample:
            return
        actor = current_actor()
        now = time.time()
        tag = None if reference.startswith(("sha256:", "sha512:")) else reference
        with self._lock:
            if self.batch > 0:
                key: tuple = (repository, digest, tag, actor.kind, actor.name, actor.address)
            else:
                self._seq += 1
                key = (self._seq,)
            entry = self._pending.get(key)
            if entry is None:
                self._pending[key] = [repository, digest, tag, media_type, size, actor, 1,
                                      now, now]
            else:
                entry[6] += 1
                entry[8] = now
            full = len(self._pending) >= MAX_KEYS
        if full or self.batch <= 0:
            self._wake.set()
        if self._thread is None:
            self.start()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="events-pulls", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        try:
            self.flush()
        except Exception:  # at exit, the database may be gone: the pulls are lost
            log.warning("could not write the last pull events")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.batch if self.batch > 0 else 0.2)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("could not write pull events")

    def flush(self) -> int:
        with self._lock:
            entries, self._pending = list(self._pending.values()), {}
        if not entries:
            return 0
        with self.store.write() as conn:
            for repository, digest, tag, media_type, size, actor, count, first, last in entries:
                with acting_as(actor):
                    self.store.events.emit(
                        conn, "manifest.pulled", repository=repository, digest=digest,
                        tags=[tag] if tag else [], media_type=media_type, size=size,
                        count=count, first_at=first, last_at=last)
        return len(entries)
