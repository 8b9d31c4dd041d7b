"""Experiment, not adopted (docs/performance.md, the request floor): the registry's
gthread worker, where a pool thread keeps its kept-alive connection for a while
(polls it for the next request itself, up to LINGER_SECONDS) instead of handing it
back to the poller after every answer; it hands it back as soon as another
connection waits for a thread. Measured by bench/floor_syscalls.py (class `linger`).
"""

from __future__ import annotations

import os
import select
import time
from typing import Any

from ociregistry.server_worker import RegistryThreadWorker

LINGER = float(os.environ.get("LINGER_SECONDS", "0.5"))  # most a thread waits
SLICE = float(os.environ.get("LINGER_SLICE", "0.01"))  # how often it looks at the pool


class LingerThreadWorker(RegistryThreadWorker):
    def handle(self, conn: Any) -> tuple[bool, Any]:
        keepalive, conn = super().handle(conn)
        while keepalive and self._next_request_arrives(conn):
            keepalive, conn = super().handle(conn)
        return keepalive, conn

    def _pool_saturated(self) -> bool:
        # A connection waits for a thread: hand this one back to the poller.
        return not self.tpool._work_queue.empty()

    def _next_request_arrives(self, conn: Any) -> bool:
        if not self.alive or self._pool_saturated():
            return False
        poller = select.poll()
        poller.register(conn.sock.fileno(), select.POLLIN)
        deadline = time.monotonic() + min(LINGER, self.cfg.keepalive)
        timeout = SLICE
        while True:
            if poller.poll(timeout * 1000):
                return True  # a request (or the client's close): served, then seen
            if not self.alive or self._pool_saturated():
                return False
            timeout = min(SLICE, deadline - time.monotonic())
            if timeout <= 0:
                return False
