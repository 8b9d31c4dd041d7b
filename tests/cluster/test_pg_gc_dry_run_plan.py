"""A dry run's later rounds on PostgreSQL look the candidates up by key.

A dry run counts the manifests it has found as gone and searches again, with those
ids beside the candidates. At 1 million manifests with 9,510 garbage, one statement
over all the candidates made PostgreSQL scan every manifest and every blob link
(7 s and 5 s: bench/scale_gc.py --explain); the GC now reads the candidates first
and names them by key, a chunk at a time (metadata/gc_queries.py, CHUNK). Here:
200,000 manifests, 1 % of them garbage, statistics taken, and the plan of every
statement the two finding queries run, with the garbage counted as gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ociregistry.metadata import gc_queries as q
from ociregistry.metadata.store import MetadataStore

MANIFESTS = 200_000
GARBAGE_EVERY = 100


@pytest.fixture
def store(pg_url: str) -> Iterator[MetadataStore]:
    db = MetadataStore(pg_url)
    db.create_schema()
    with db.write() as conn:  # the rows the bench data set holds, in miniature
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")  # no triggers
        conn.exec_driver_sql(
            "INSERT INTO repositories (id, name, created_at)"
            " SELECT g, 'r' || g, 0 FROM generate_series(1, 2000) g")
        conn.exec_driver_sql(
            "INSERT INTO blobs (digest, size, touched_at) SELECT 'sha256:' || md5(g::text)"
            f" || md5(g::text), 1, 0 FROM generate_series(1, {MANIFESTS}) g")
        conn.exec_driver_sql(
            "INSERT INTO manifests (id, repository_id, digest, media_type, size, payload,"
            " created_at) SELECT g, 1 + mod(g, 2000), 'sha256:m' || md5(g::text), 'x', 1,"
            f" '\\x00'::bytea, 0 FROM generate_series(1, {MANIFESTS}) g")
        conn.exec_driver_sql(  # each manifest links a blob of its own
            "INSERT INTO manifest_blobs (manifest_id, digest) SELECT g, 'sha256:'"
            f" || md5(g::text) || md5(g::text) FROM generate_series(1, {MANIFESTS}) g")
        conn.exec_driver_sql(
            "INSERT INTO tags (repository_id, name, manifest_id, updated_at)"
            f" SELECT 1 + mod(g, 2000), 't' || g, g, 0 FROM generate_series(1, {MANIFESTS}) g"
            f" WHERE mod(g, {GARBAGE_EVERY}) <> 0")
        conn.exec_driver_sql(  # the candidates a GC that saw all but the garbage leaves
            "INSERT INTO gc_manifest_candidates (manifest_id) SELECT id FROM manifests"
            f" WHERE mod(id, {GARBAGE_EVERY}) = 0")
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    yield db
    db.dispose()


def plans(store: MetadataStore, run) -> list[str]:  # noqa: ANN001
    """EXPLAIN of every SELECT ``run`` executes, with its parameters."""
    seen: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):  # noqa: ANN001, ANN202
        seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    out = []
    with store.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        for statement, parameters in seen:
            if statement.lstrip().upper().startswith("SELECT"):
                cursor.execute("EXPLAIN " + statement, parameters)
                out.append("\n".join(row[0] for row in cursor.fetchall()))
    return out


def test_a_dry_runs_later_rounds_walk_neither_manifests_nor_blob_links(store):
    now = time.time()
    found = q.untagged_manifests(store, now, keep_since=now)
    assert len(found) == MANIFESTS // GARBAGE_EVERY
    gone = {manifest_id for manifest_id, _repo, _digest in found}

    later = plans(store, lambda: q.untagged_manifests(store, now, gone, now))
    later += plans(store, lambda: q.unreferenced_blobs(store, now, gone, now))
    assert len(later) > 2
    for plan in later:
        assert "Seq Scan on manifests " not in plan + " ", plan
        assert "Seq Scan on manifest_blobs" not in plan, plan
        assert "Seq Scan on tags" not in plan, plan
    # and they find what a real run deletes: nothing more untagged; the garbage's blobs
    assert q.untagged_manifests(store, now, gone, now) == []
    blobs = q.unreferenced_blobs(store, now, gone, now)
    assert len(blobs) == len(gone)
