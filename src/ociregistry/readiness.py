"""/readyz: can this instance take a push now? A write to each dependency, cached.

``SELECT 1`` and a HEAD of the bucket say a server answers, not that a push
would succeed: a database in recovery (a replica after a failover) or a full
disk refuses writes, and an object store can refuse every write it is asked to
encrypt. So the probe writes: a row of ``shared_state`` in the database, and
what an upload writes to the blob storage (storage/s3_probe.py; a file on the
filesystem driver). The answer is kept for ``TTL`` seconds per process, so a
load balancer polling every second costs one small write per dependency every
few seconds, and a failing dependency is not hammered by the probes either.
"""

from __future__ import annotations

import socket
import threading
import time

from ociregistry import metrics
from ociregistry.metadata import shared_state
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.base import BlobStorage

TTL = 5.0  # seconds an answer is reused (http.readiness_cache_seconds)
PROBE_ROW = "readiness-probe"


class ReadinessProbe:
    """Why this instance can't take pushes right now (or None), at most every TTL s."""

    def __init__(self, metadata: MetadataStore, storage: BlobStorage, ttl: float = TTL) -> None:
        self.metadata = metadata
        self.storage = storage
        self.ttl = ttl
        self._lock = threading.Lock()
        self._answer: tuple[float, str | None] | None = None

    def problem(self) -> str | None:
        with self._lock:  # one probe at a time; the others wait for its answer
            now = time.monotonic()
            if self._answer is not None and now - self._answer[0] < self.ttl:
                return self._answer[1]
            answer = self._probe()
            self._answer = (time.monotonic(), answer)
            return answer

    def _probe(self) -> str | None:
        try:
            # A real write: a read-only or recovering database fails here.
            shared_state.put(self.metadata, PROBE_ROW, socket.gethostname())
        except Exception as exc:  # any driver error means "not ready"
            metrics.READINESS_FAILURES.labels("database").inc()
            return f"database: {type(exc).__name__}: {_first_line(exc)}"[:500]
        try:
            self.storage.probe_write()
        except Exception as exc:
            metrics.READINESS_FAILURES.labels("storage").inc()
            return f"storage: {type(exc).__name__}: {_first_line(exc)}"[:500]
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
