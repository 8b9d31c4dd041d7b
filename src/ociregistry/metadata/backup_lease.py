"""The backup lease: while a backup holds it, no blob row is deleted.

A backup snapshots the database, then copies the blobs the snapshot lists. A
garbage collection that deleted one of those blobs in between would leave the
backup with a row and no bytes. So the backup takes this lease (a row of the
cluster-wide ``locks`` table, with an expiry it keeps renewing) *before* its
snapshot, and every blob-row deletion checks it inside its own write
transaction: either the deletion committed first (the snapshot then does not
list the blob) or it sees the lease and keeps the blob for a later run.

On SQLite the write transactions are serialised (BEGIN IMMEDIATE); on
PostgreSQL the deletion shares the advisory lock ``try_lock`` takes exclusively
to write the lease, so the check and the lease cannot cross.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore

LEASE = "backup"


def held(store: MetadataStore, conn: Connection) -> bool:
    """True while an unexpired backup lease exists; call inside the deleting transaction."""
    store.lock_digest(conn, f"lock:{LEASE}", shared=True)
    expires = conn.execute(
        sa.select(t.locks.c.expires_at).where(t.locks.c.name == LEASE)
    ).scalar()
    return expires is not None and expires > time.time()


def holder(store: MetadataStore) -> tuple[str, float] | None:
    """(holder, expires_at) of the current lease, None when there is none (for display)."""
    with store.read() as conn:
        row = conn.execute(
            sa.select(t.locks.c.holder, t.locks.c.expires_at).where(t.locks.c.name == LEASE)
        ).first()
    if row is None or row.expires_at <= time.time():
        return None
    return row.holder, row.expires_at
