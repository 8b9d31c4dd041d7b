"""Hold the backup lease (metadata/backup_lease.py) for the length of a block,
renewing it from a thread so that a long copy keeps it and a killed backup
loses it after ``ttl`` seconds."""

from __future__ import annotations

import logging
import os
import threading
import time
from types import TracebackType

from ociregistry.metadata.backup_lease import LEASE
from ociregistry.metadata.store import MetadataStore

log = logging.getLogger(__name__)

LEASE_TTL = 300.0
RENEW_EVERY = 30.0


class BackupRunning(Exception):
    pass


class BackupLease:
    """``with BackupLease(store): ...``: GC deletes no blob row inside the block."""

    def __init__(self, store: MetadataStore, ttl: float = LEASE_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self.holder = f"{os.uname().nodename}:{os.getpid()}:{time.time()}"
        self.lost = False  # set when a renewal failed: the block's work is suspect
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BackupLease:
        if not self.store.try_lock(LEASE, self.holder, ttl=self.ttl):
            self._take_over_dead_holder()
            if not self.store.try_lock(LEASE, self.holder, ttl=self.ttl):
                raise BackupRunning("another backup holds the backup lease")
        self._thread = threading.Thread(target=self._renew, name="backup-lease", daemon=True)
        self._thread.start()
        return self

    def _take_over_dead_holder(self) -> None:
        """A lease left by a killed backup on this machine need not wait for its expiry."""
        from ociregistry.metadata.backup_lease import holder

        current = holder(self.store)
        if current is None:
            return
        host, _, rest = current[0].partition(":")
        pid = rest.partition(":")[0]
        if host != os.uname().nodename or not pid.isdigit():
            return
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            log.warning("taking over the backup lease of %s (no such process)", current[0])
            self.store.unlock(LEASE, current[0])
        except PermissionError:  # alive, someone else's
            pass

    def _renew(self) -> None:
        every = min(RENEW_EVERY, self.ttl / 4)
        while not self._stop.wait(every):
            try:
                if not self.store.try_lock(LEASE, self.holder, ttl=self.ttl):
                    self.lost = True
            except Exception:  # a database hiccup: try again; expiry says when it matters
                log.warning("could not renew the backup lease", exc_info=True)
            if self._lease_expired():
                self.lost = True

    def _lease_expired(self) -> bool:
        from ociregistry.metadata.backup_lease import holder

        try:
            current = holder(self.store)
        except Exception:
            return False
        return current is None or current[0] != self.holder

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.store.unlock(LEASE, self.holder)
