"""Quotas per repository namespace: their rules, management and refusals. No Flask.

A quota names a repository glob (``team-a/**``), a byte limit and an optional
warning threshold. Its usage is counted in the index by
metadata/quota_accounting.py, in the transactions that change it; this module
turns a ``QuotaExceeded`` from there into the OCI ``DENIED`` error the client
sees, counts refusals and warnings (metrics, log lines, and ``refusal_observers``
for events), keeps the quotas of the configuration file in the index, and
offers the management operations the API, the UI and the CLI share.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ociregistry import metrics
from ociregistry.admin.errors import Conflict, InvalidRequest, NotFound
from ociregistry.auth.rules import glob_match
from ociregistry.core.errors import Denied
from ociregistry.metadata import quota_accounting as acc
from ociregistry.metadata import quota_queries as q
from ociregistry.metadata.quota_queries import QuotaRow

log = logging.getLogger("ociregistry.quotas")

# Called after a refusal (the change rolled back): (kind, QuotaExceeded), where kind
# is "upload" (blob bytes), "mount" or "manifest". The events outbox hooks in here.
refusal_observers: list[Callable[[str, acc.QuotaExceeded], None]] = []

MAX_PATTERN = 255


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def denied(exc: acc.QuotaExceeded) -> Denied:
    message = (
        f"quota exceeded for namespace {exc.namespace}: usage {_human(exc.usage)} + "
        f"{_human(exc.requested)} would exceed the limit of {_human(exc.limit)}"
    )
    return Denied(message, {"namespace": exc.namespace, "usage": exc.usage,
                            "limit": exc.limit, "requested": exc.requested})


def record_refusal(kind: str, exc: acc.QuotaExceeded) -> None:
    metrics.QUOTA_REFUSALS.labels(exc.namespace, kind).inc()
    log.warning("quota refused %s: namespace %s usage %d + %d > limit %d",
                kind, exc.namespace, exc.usage, exc.requested, exc.limit)
    for observer in list(refusal_observers):
        observer(kind, exc)


@contextmanager
def refusals(kind: str) -> Iterator[None]:
    """Around a change that may grow usage: a quota refusal leaves as OCI DENIED."""
    try:
        yield
    except acc.QuotaExceeded as exc:
        record_refusal(kind, exc)
        raise denied(exc) from exc


def _warned(_conn: Any, crossing: acc.WarningCrossed) -> None:
    metrics.QUOTA_WARNINGS.labels(crossing.namespace).inc()
    log.warning("quota warning: namespace %s usage %d reached the warning threshold %d "
                "(limit %d)", crossing.namespace, crossing.usage, crossing.warning,
                crossing.limit)


acc.warning_observers.append(_warned)


def quota_dict(row: QuotaRow) -> dict[str, Any]:
    return {
        "id": row.id, "namespace": row.pattern, "limit": row.limit_bytes,
        "warning": row.warning_bytes, "usage": row.usage, "blob_bytes": row.blob_bytes,
        "upload_bytes": row.upload_bytes, "source": row.source,
        "percent": round(100 * row.usage / row.limit_bytes, 1) if row.limit_bytes else 100.0,
        "created_at": row.created_at, "updated_at": row.updated_at,
    }


def _check_values(limit: Any, warning: Any) -> None:
    for label, value in (("limit", limit), ("warning", warning)):
        if value is None and label == "warning":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
            raise InvalidRequest(f"{label} must be a number of bytes (0 to 2^62)")
    if warning is not None and warning > limit:
        raise InvalidRequest("the warning threshold must not be above the limit")


def check_pattern(pattern: Any) -> str:
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
        raise InvalidRequest(f"namespace must be a repository glob of 1 to {MAX_PATTERN} "
                             "characters")
    if "${user}" in pattern or any(c.isspace() for c in pattern):
        raise InvalidRequest("namespace must be a repository glob (*, **, ?), without "
                             "${user} or spaces")
    return pattern


class QuotaService:
    """Quotas of the index: configured ones kept in step, others managed at run time."""

    def __init__(self, metadata: Any, configured: Sequence[Any] = ()) -> None:
        self.db = metadata
        self.configured = list(configured)

    # -- the configuration file ------------------------------------------------
    def sync_config(self) -> None:
        """Create or update the configured quotas; drop configured ones no longer listed.
        Quotas made at run time are left alone."""
        wanted = {c.namespace: c for c in self.configured}
        for row in q.list_quotas(self.db):
            if row.source == "config" and row.pattern not in wanted:
                q.delete_quota(self.db, row.id)
        existing = {row.pattern: row for row in q.list_quotas(self.db)}
        for pattern, conf in wanted.items():
            check_pattern(pattern)
            row = existing.get(pattern)
            if row is None:
                q.create_quota(self.db, pattern, conf.limit, conf.warning, "config")
            elif (row.limit_bytes, row.warning_bytes, row.source) != (
                    conf.limit, conf.warning, "config"):
                q.update_quota(self.db, row.id, {"limit_bytes": conf.limit,
                                                 "warning_bytes": conf.warning,
                                                 "source": "config"})

    # -- management ----------------------------------------------------------------
    def list(self) -> list[QuotaRow]:
        return q.list_quotas(self.db)

    def get(self, quota_id: int) -> QuotaRow:
        row = q.get_quota(self.db, quota_id)
        if row is None:
            raise NotFound(f"no quota {quota_id}")
        return row

    def create(self, pattern: Any, limit: Any, warning: Any = None) -> QuotaRow:
        check_pattern(pattern)
        _check_values(limit, warning)
        quota_id = q.create_quota(self.db, pattern, limit, warning, "api")
        if quota_id is None:
            raise Conflict(f"a quota on {pattern} exists already")
        return self.get(quota_id)

    def _editable(self, quota_id: int) -> QuotaRow:
        row = self.get(quota_id)
        if row.source == "config":
            raise Conflict(f"the quota on {row.pattern} is defined in the configuration "
                           "file; change it there")
        return row

    def update(self, quota_id: int, changes: dict[str, Any]) -> QuotaRow:
        row = self._editable(quota_id)
        limit = changes.get("limit", row.limit_bytes)
        warning = changes["warning"] if "warning" in changes else row.warning_bytes
        _check_values(limit, warning)
        q.update_quota(self.db, quota_id, {"limit_bytes": limit, "warning_bytes": warning})
        return self.get(quota_id)

    def delete(self, quota_id: int) -> None:
        self._editable(quota_id)
        q.delete_quota(self.db, quota_id)

    def recount(self, quota_id: int) -> dict[str, Any]:
        result = q.recount(self.db, quota_id)
        if result is None:
            raise NotFound(f"no quota {quota_id}")
        if result[0] != result[1]:
            log.warning("quota recount: quota %d usage was %d, counted %d", quota_id, *result)
        return {"before": result[0], "after": result[1], "quota": quota_dict(self.get(quota_id))}

    def walks(self) -> dict[str, tuple]:
        """Every quota's usage computed from scratch (``ociregistry du --quotas``)."""
        return q.namespace_walks(self.db, [row.pattern for row in self.list()])

    # -- before bytes are stored -------------------------------------------------------
    def precheck(self, name: str, length: int | None, digest: str | None = None,
                 kind: str = "upload") -> None:
        """Refuse ``length`` more bytes into ``name`` when a quota's usage already leaves
        no room for them: before the body is read. A body that ends as ``digest``, which
        the namespace holds already, adds nothing. One read of the (small) quota table,
        not cached, so a quota made on another instance applies at once; the exact check
        still runs when the bytes are recorded (a concurrent push may take the room)."""
        if not length or length <= 0:
            return
        for row in q.list_quotas(self.db):
            if not glob_match(row.pattern, name) or row.usage + length <= row.limit_bytes:
                continue
            if digest and q.holds(self.db, row.id, digest):
                continue
            exc = acc.QuotaExceeded(row.pattern, row.usage, row.limit_bytes, length)
            record_refusal(kind, exc)
            raise denied(exc)
