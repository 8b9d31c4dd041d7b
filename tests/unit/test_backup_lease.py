"""The backup lease, checked inside the blob deletion's own transaction (the GC's
early skip aside): no blob row goes while a backup holds it, and a lease that
expired or was released stops protecting. Run on PostgreSQL too by
tests/cluster/test_cluster_backup.py::test_the_lease_stops_blob_deletion_on_postgresql."""

from __future__ import annotations

import time

from ociregistry.backup.lease import BackupLease, BackupRunning
from ociregistry.metadata import gc_queries as q
from ociregistry.metadata.store import MetadataStore

DIGEST = "sha256:" + "ab" * 32


def lease_blocks_deletion(store: MetadataStore) -> None:
    store.create_schema()
    with store.write() as conn:
        repo = store.ensure_repository(conn, "app/lease")
        store.record_blob(conn, repo, DIGEST, 10)
    cutoff = time.time() + 1  # everything is old enough
    with BackupLease(store, ttl=60):
        assert not q.delete_blob_if_unreferenced(store, DIGEST, cutoff)
        try:
            with BackupLease(store, ttl=60):
                raise AssertionError("a second backup got the lease")
        except BackupRunning:
            pass
    assert q.delete_blob_if_unreferenced(store, DIGEST, cutoff)
    with store.write() as conn:
        repo = store.ensure_repository(conn, "app/lease")
        store.record_blob(conn, repo, DIGEST, 10)
    store.try_lock("backup", "gone:1:0", ttl=0.01)  # a lease that lapsed
    time.sleep(0.05)
    assert q.delete_blob_if_unreferenced(store, DIGEST, cutoff)


def test_the_lease_stops_blob_deletion(tmp_path):
    store = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        lease_blocks_deletion(store)
    finally:
        store.dispose()
