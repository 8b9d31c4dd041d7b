"""The hot read queries (tags pages from the driver's cursor, manifest by tag) on
PostgreSQL: the same answers as on SQLite (tests/unit/test_hot_reads.py)."""

from __future__ import annotations

from ociregistry.metadata.store import MetadataStore
from tests.cluster.pg import migrated_store  # noqa: F401  (the "store" fixture)
from tests.unit.test_hot_reads import check_tag_pages


def test_tag_pages_on_postgresql(store: MetadataStore) -> None:
    check_tag_pages(store)


def test_a_pooled_connection_the_server_closed_is_replaced(store: MetadataStore,
                                                          pg_url: str) -> None:
    """Hot reads take their connection from the same pool, with its pre-ping: after
    the server drops every connection (a restart), the next read still answers."""
    check_tag_pages(store)
    other = MetadataStore(pg_url)
    try:
        with other.engine.connect() as conn:
            killed = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()").scalar()
            conn.commit()
        assert killed >= 1
    finally:
        other.dispose()
    assert store.tags("team/app", 2, None) == ["v0000", "v0001"]
    row = store.get_manifest("team/app", "v0001", by_digest=False)
    assert row is not None
