"""Events of the storage lifecycle: retention deletions, quota warnings and refusals.

Connected once per runtime (runtime.build_runtime). Retention and quota warnings
emit inside the transaction that makes the change, like every other event; a
quota refusal has rolled its change back, so it is recorded in a small
transaction of its own.
"""

from __future__ import annotations

from typing import Any

from ociregistry.lifecycle import quotas as quota_service
from ociregistry.metadata import quota_accounting
from ociregistry.metadata.quota_accounting import QuotaExceeded, WarningCrossed
from ociregistry.metadata.store import MetadataStore

# The store whose outbox the module-level quota observers write to: one runtime
# per process serves requests; the latest one built wins.
_store: MetadataStore | None = None


def _quota_warning(conn: Any, crossed: WarningCrossed) -> None:
    if _store is not None:
        _store.events.emit(conn, "quota.warning", namespace=crossed.namespace,
                           usage=crossed.usage, warning=crossed.warning, limit=crossed.limit)


def _quota_refused(kind: str, exc: QuotaExceeded) -> None:
    if _store is not None:
        with _store.write() as conn:
            _store.events.emit(conn, "quota.refused", namespace=exc.namespace, kind=kind,
                               usage=exc.usage, requested=exc.requested, limit=exc.limit)


def connect(store: MetadataStore, retention: Any) -> None:
    """Emit lifecycle events into ``store``'s outbox."""
    global _store
    _store = store
    if _quota_warning not in quota_accounting.warning_observers:
        quota_accounting.warning_observers.append(_quota_warning)
    if _quota_refused not in quota_service.refusal_observers:
        quota_service.refusal_observers.append(_quota_refused)
    if retention is not None:
        def deleted(conn: Any, d: Any) -> None:
            # A manifest's own deletion is already a manifest.deleted event (the store's
            # hook); a tag deleted by retention bypasses delete_tag, so it is said here.
            if d.kind == "tag":
                store.events.emit(conn, "tag.deleted", repository=d.repository,
                                  digest=d.digest, tags=[d.tag], policy=d.policy, rule=d.rule)

        retention.on_delete = deleted
