"""Request rate limits per key (client address or user). No Flask here.

``SharedRateLimiter`` is what the registry uses: a GCRA token bucket per key
kept in the index (metadata/rate_limit_queries.py), so every worker process
and every instance draws from the same bucket. To keep the index off the
request path, a process takes tokens in batches of up to ``batch`` and spends
them locally for at most ``hold`` seconds; what it has not spent by then is
lost, so the shared limit is never exceeded, and a key is at worst refused
``batch - 1`` tokens early per process (exact at ``batch`` 1, which is what a
low rate gets).

``RateLimiter`` is the same bucket in one process's memory.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from ociregistry.metadata import rate_limit_queries as queries
from ociregistry.metadata.store import MetadataStore

log = logging.getLogger("ociregistry.auth")

PRUNE_EVERY = 1000  # about one shared-table clean-up per this many index round trips
MAX_TRACKED = 100_000  # local batches remembered per process


class RateLimiter:
    def __init__(self, rate: float, burst: int, capacity: int = 100_000) -> None:
        self.rate = rate  # tokens per second
        self.burst = float(burst)
        self.capacity = capacity
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``: 0 when allowed, else seconds until one is due."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                tokens -= 1
                wait = 0.0
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        return wait


@dataclass
class _Batch:
    left: int
    until: float  # monotonic


def batch_size(rate: float, burst: int, seconds: float = 0.1) -> int:
    """Tokens a process takes at once: what the rate allows in ``seconds``,
    at most a quarter of the burst, at least one."""
    return max(1, min(burst // 4, int(rate * seconds)))


class SharedRateLimiter:
    """A token bucket per key, shared through the index by every process."""

    def __init__(self, db: MetadataStore, name: str, rate: float, burst: int,
                 batch: int | None = None, hold: float = 1.0) -> None:
        self.db = db
        self.name = name
        self.interval = 1.0 / rate
        self.span = burst * self.interval  # the bucket's depth, in seconds of rate
        self.batch = batch if batch is not None else batch_size(rate, burst)
        self.batch = max(1, min(self.batch, burst))
        self.hold = hold
        self._local: OrderedDict[str, _Batch] = OrderedDict()
        self._lock = threading.Lock()
        self._trips = 0

    def _spend_local(self, key: str) -> bool:
        with self._lock:
            batch = self._local.get(key)
            if batch is None:
                return False
            if batch.left <= 0 or time.monotonic() >= batch.until:
                del self._local[key]
                return False
            batch.left -= 1
            return True

    def check(self, key: str) -> float:
        """Take one token for ``key``: 0 when allowed, else seconds until one is due."""
        if self._spend_local(key):
            return 0.0
        shared_key = f"{self.name}:{key}"
        now = time.time()
        count = self.batch
        granted, tat = queries.take(self.db, shared_key, now, count * self.interval,
                                    self.span, secrets.token_hex(8))
        if not granted and count > 1:
            count = 1
            granted, tat = queries.take(self.db, shared_key, now, self.interval,
                                        self.span, secrets.token_hex(8))
        self._maybe_prune(now)
        if not granted:
            return max(0.001, tat + self.interval - self.span - now)
        if count > 1:
            with self._lock:
                self._local[key] = _Batch(count - 1, time.monotonic() + self.hold)
                self._local.move_to_end(key)
                while len(self._local) > MAX_TRACKED:
                    self._local.popitem(last=False)
        return 0.0

    def _maybe_prune(self, now: float) -> None:
        if random.randrange(PRUNE_EVERY):
            return
        try:
            queries.prune_buckets(self.db, now)
        except Exception:  # a clean-up that fails is retried another time
            log.warning("could not prune the rate-limit tables", exc_info=True)


def retry_after(wait: float) -> str:
    """The Retry-After header value (whole seconds, at least 1)."""
    return str(max(1, math.ceil(wait)))
