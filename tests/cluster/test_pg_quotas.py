"""Quota accounting on PostgreSQL, at the store: transactions racing on one namespace.

Eight transactions released at once (tests/cluster/test_pg_store.py ``together``):
the same new blob linked from eight repositories counts once; eight distinct blobs
against a limit with room for some are accepted exactly up to it; a quota created
while pushes run counts what they committed, once.
"""

from __future__ import annotations

import time

from ociregistry.metadata import quota_queries as qq
from ociregistry.metadata.quota_accounting import QuotaExceeded
from tests.cluster.test_pg_store import THREADS, store, together  # noqa: F401


def _link(db, repo: str, digest: str, size: int, hold: float = 0.0) -> None:
    with db.write() as conn:
        repo_id = db.ensure_repository(conn, repo)
        db.record_blob(conn, repo_id, digest, size)
        time.sleep(hold)  # keep the transaction open while the others arrive


def test_the_same_new_blob_from_eight_transactions_counts_once(store):  # noqa: F811
    quota_id = qq.create_quota(store, "ns/**", 1 << 30, None, "api")
    results = together(lambda i: _link(store, f"ns/r{i}", "sha256:" + "a" * 64, 1000, 0.05))
    assert all(r is None for r in results), results
    row = qq.get_quota(store, quota_id)
    assert row.blob_bytes == 1000
    assert qq.namespace_walks(store, ["ns/**"])["ns/**"][1] == 1000
    assert qq.recount(store, quota_id) == (1000, 1000)


def test_the_limit_is_exact_under_concurrent_pushes(store):  # noqa: F811
    quota_id = qq.create_quota(store, "ns/**", 5_500, None, "api")
    results = together(lambda i: _link(store, f"ns/r{i % 3}", f"sha256:{i:064x}", 1000, 0.05))
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == THREADS - 5, results
    assert all(r is None or isinstance(r, QuotaExceeded) for r in results), results
    assert qq.get_quota(store, quota_id).blob_bytes == 5_000
    assert qq.recount(store, quota_id) == (5_000, 5_000)


def test_a_quota_created_while_pushes_run_counts_each_once(store):  # noqa: F811
    def work(i: int) -> object:
        if i == 0:
            return qq.create_quota(store, "ns/**", 1 << 30, None, "api")
        _link(store, f"ns/r{i}", f"sha256:{i:064x}", 100 * i, 0.02)
        _link(store, f"ns/r{i}", "sha256:" + "b" * 64, 7, 0.02)
        return None

    results = together(work)
    quota_id = results[0]
    assert isinstance(quota_id, int), results
    expected = sum(100 * i for i in range(1, THREADS)) + 7
    assert qq.get_quota(store, quota_id).blob_bytes == expected
    assert qq.recount(store, quota_id) == (expected, expected)


def test_upload_ends_and_manifest_pushes_on_one_blob_do_not_deadlock(store):  # noqa: F811
    """An upload's end counts its bytes out (quota row) then links the blob (its count);
    a manifest push referencing the same blob counts it (its count) then the quota row.
    Interleaved, these would wait for each other in a cycle if rows were not locked in
    one order (quota rows first)."""
    digest = "sha256:" + "c" * 64
    quota_id = qq.create_quota(store, "ns/**", 1 << 30, None, "api")
    with store.write() as conn:
        base = store.ensure_repository(conn, "ns/base")
        store.record_blob(conn, base, digest, 500)
    for i in range(0, THREADS, 2):
        with store.write() as conn:
            store.create_upload(conn, f"u{i}", store.ensure_repository(conn, f"ns/u{i}"),
                                "sha256")
        store.save_upload(f"u{i}", 500)

    def work(i: int) -> None:
        if i % 2 == 0:  # an upload of the blob ends in ns/u<i>
            with store.write() as conn:
                repo_id = store.repository_id(conn, f"ns/u{i}")
                store.delete_upload(conn, f"u{i}")
                time.sleep(0.1)
                store.record_blob(conn, repo_id, digest, 500)
        else:  # a manifest in ns/base references it
            time.sleep(0.05)
            with store.write() as conn:
                store.insert_manifest(conn, base, f"sha256:{i:064x}", "m", b"{}" + bytes(i),
                                      None, None, None, [digest], [])

    results = together(work)
    assert all(r is None for r in results), results
    walked = qq.namespace_walks(store, ["ns/**"])["ns/**"]
    row = qq.get_quota(store, quota_id)
    assert (row.blob_bytes, row.upload_bytes) == walked[1:]
    assert row.upload_bytes == 0
