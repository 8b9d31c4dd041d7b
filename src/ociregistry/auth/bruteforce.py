"""Limits on failed password checks (Basic, the token endpoint, UI sign-in). No Flask here.

Every password check that will run bcrypt first reserves one attempt on the
caller's address and on the user name tried, in the index (one atomic upsert
per key, metadata/rate_limit_queries.py), so the count is exact across worker
processes and instances, concurrent guesses included. A check that succeeds
gives its attempt back; a failed one stays counted until the window (which
starts at the first failure) ends. Over the limit, the password is not even
checked: the caller gets TOOMANYREQUESTS with the seconds left in the window.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import dataclass

from ociregistry import metrics
from ociregistry.auth.ratelimit import PRUNE_EVERY, retry_after
from ociregistry.core.errors import TooManyRequests
from ociregistry.metadata import rate_limit_queries as queries
from ociregistry.metadata.store import MetadataStore

log = logging.getLogger("ociregistry.auth")


def user_key(user: str) -> str:
    # Attacker-chosen names of any length: long ones are stored as a digest.
    if len(user) <= 120:
        return "user:" + user
    return "user#" + hashlib.sha256(user.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class Attempt:
    """One reserved password check; ``succeeded()`` gives it back."""

    limiter: FailureLimiter
    windows: list[tuple[str, float]]

    def succeeded(self) -> None:
        if self.windows:
            queries.refund_failure(self.limiter.db, self.windows)
            self.windows = []


class FailureLimiter:
    """At most ``per_address`` / ``per_user`` failed checks per ``window`` seconds (0: off)."""

    def __init__(self, db: MetadataStore, per_address: int, per_user: int,
                 window: float) -> None:
        self.db = db
        self.per_address = per_address
        self.per_user = per_user
        self.window = window

    @property
    def enabled(self) -> bool:
        return bool(self.per_address or self.per_user)

    def attempt(self, address: str | None, user: str) -> Attempt:
        """Reserve one check, or raise TooManyRequests when a limit is used up."""
        limits: dict[str, int] = {}
        if self.per_address and address:
            limits["addr:" + address] = self.per_address
        if self.per_user and user:
            limits[user_key(user)] = self.per_user
        if not limits:
            return Attempt(self, [])
        now = time.time()
        keys = list(limits)
        counted = queries.count_failure(self.db, keys, now, self.window)
        if not random.randrange(PRUNE_EVERY):
            queries.prune_failures(self.db, now, self.window)
        wait = 0.0
        for key, (failures, start) in zip(keys, counted, strict=True):
            if failures > limits[key]:
                wait = max(wait, start + self.window - now)
        if wait > 0:
            metrics.RATE_LIMITED.labels("auth_failures").inc()
            log.warning("too many failed sign-ins from %s (user %r): refused for %.0f s",
                        address, user[:120], wait)
            raise TooManyRequests(
                "too many failed authentication attempts; try again later",
                {"retry_after_seconds": float(retry_after(wait))},
                headers={"Retry-After": retry_after(wait)},
            )
        return Attempt(self, [(key, start) for key, (_, start) in zip(keys, counted,
                                                                        strict=True)])
