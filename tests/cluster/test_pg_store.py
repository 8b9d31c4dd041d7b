"""MetadataStore on PostgreSQL: the races SQLite's single writer never sees."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from ociregistry.metadata import gc_queries
from ociregistry.metadata.migrate import pending
from ociregistry.metadata.store import MetadataStore

THREADS = 8


@pytest.fixture
def store(pg_url: str) -> Iterator[MetadataStore]:
    db = MetadataStore(pg_url, pool_size=THREADS)
    assert db.dialect == "postgresql"
    assert pending(db)
    db.create_schema()
    assert not pending(db)
    yield db
    db.dispose()


def together(fn: Callable[[int], object]) -> list[object]:
    """Run fn(i) in THREADS threads released at once; their results (or exceptions)."""
    barrier = threading.Barrier(THREADS)
    results: list[object] = [None] * THREADS

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # reported by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_migrations_are_idempotent(store):
    store.create_schema()
    assert not pending(store)


def test_hot_statements_run_through_psycopg(store):
    with store.write() as conn:
        repo_id = store.ensure_repository(conn, "a/b")
        store.record_blob(conn, repo_id, "sha256:" + "1" * 64, 3)
        manifest_id = store.insert_manifest(
            conn, repo_id, "sha256:" + "2" * 64, "application/x", b"\x00\xff{}", None, None,
            None, ["sha256:" + "1" * 64], [],
        )
        store.set_tag(conn, repo_id, "v1", manifest_id)
    row = store.get_manifest("a/b", "sha256:" + "2" * 64, True)
    assert row is not None and row.payload == b"\x00\xff{}" and isinstance(row.payload, bytes)
    assert store.get_manifest("a/b", "v1", False).id == manifest_id
    assert store.get_manifest("a/b", "v2", False) is None
    assert store.get_manifest("a/c", "v1", False) is None
    assert store.repository_blob_size("a/b", "sha256:" + "1" * 64) == 3
    assert store.repository_blob_size("a/c", "sha256:" + "1" * 64) is None


def test_upserts_touch_instead_of_failing(store):
    digest = "sha256:" + "3" * 64
    with store.write() as conn:
        repo_id = store.ensure_repository(conn, "up/sert")
        store.record_blob(conn, repo_id, digest, 10)
        store.record_blob(conn, repo_id, digest, 10)
        manifest_id = store.insert_manifest(
            conn, repo_id, "sha256:" + "4" * 64, "application/x", b"{}", None, None, None,
            [digest], [],
        )
        store.set_tag(conn, repo_id, "t", manifest_id)
        store.set_tag(conn, repo_id, "t", manifest_id)
    assert store.tags("up/sert", None, None) == ["t"]


def test_only_one_holder_gets_the_gc_lock(store):
    won = together(lambda i: store.try_lock("gc", f"holder-{i}", 60))
    assert sorted(map(repr, won)) == sorted(["True"] + ["False"] * (THREADS - 1))


def test_concurrent_ensure_repository_and_manifest_insert(store):
    blob = "sha256:" + "5" * 64
    with store.write() as conn:
        store.record_blob(conn, store.ensure_repository(conn, "seed"), blob, 1)

    def push(i: int) -> int:
        with store.write() as conn:
            repo_id = store.ensure_repository(conn, "race/repo")
            store.record_blob(conn, repo_id, blob, 1)
            manifest_id = store.insert_manifest(
                conn, repo_id, "sha256:" + "6" * 64, "application/x", b"{}", None, None,
                None, [blob], [],
            )
            store.set_tag(conn, repo_id, f"t{i}", manifest_id)
            return manifest_id

    ids = together(push)
    assert not [r for r in ids if isinstance(r, Exception)], ids
    assert len(set(ids)) == 1
    assert store.tags("race/repo", None, None) == sorted(f"t{i}" for i in range(THREADS))


def test_sweep_and_push_referencing_a_blob_never_both_succeed(store):
    """The advisory locks of lock_digest: per blob, either the push or the sweep wins."""
    with store.write() as conn:
        repo_id = store.ensure_repository(conn, "sweep/race")
    digests = [f"sha256:{i:064x}" for i in range(1, 41)]
    with store.write() as conn:
        for digest in digests:
            store.record_blob(conn, repo_id, digest, 1)
    removed: list[str] = []
    pushed: list[str] = []

    def sweep(_i: int) -> None:
        for digest in digests:
            if gc_queries.delete_blob_if_unreferenced(store, digest, float("inf")):
                gc_queries.remove_unrecorded_bytes(store, digest, removed.append)

    def push(i: int) -> None:
        for n, digest in enumerate(digests):
            if n % (THREADS - 1) != i - 1:
                continue
            with store.write() as conn:
                store.lock_digest(conn, digest, shared=True)
                if store.linked_digests(conn, repo_id, [digest]) != {digest}:
                    continue
                store.insert_manifest(
                    conn, repo_id, f"sha256:{n + 1000:064x}", "application/x", b"{}", None,
                    None, None, [digest], [],
                )
            pushed.append(digest)

    results = together(lambda i: sweep(i) if i == 0 else push(i))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert set(removed).isdisjoint(pushed)
    assert set(removed) | set(pushed) == set(digests)
    # every pushed blob still has its row; every removed one has none
    with store.read() as conn:
        for digest in pushed:
            assert store.blob_size(conn, digest) == 1
        for digest in removed:
            assert store.blob_size(conn, digest) is None


def test_the_generated_ui_key_is_one_for_every_instance(store, pg_url):
    """Instances racing to generate the UI session key all end up with the same one."""
    from ociregistry.core.gc_jobs import ui_secret_key

    others = [MetadataStore(pg_url) for _ in range(THREADS)]
    try:
        keys = together(lambda i: ui_secret_key(others[i]))
    finally:
        for db in others:
            db.dispose()
    assert all(isinstance(k, bytes) and len(k) == 64 for k in keys)
    assert len(set(keys)) == 1
    assert ui_secret_key(store) == keys[0]


def test_instances_writing_a_shared_value_at_once_all_succeed(store, pg_url):
    """The first write of a name races an INSERT against an INSERT on PostgreSQL."""
    from ociregistry.metadata import shared_state

    others = [MetadataStore(pg_url) for _ in range(THREADS)]
    try:
        results = together(lambda i: shared_state.put(others[i], "ui.gc_progress", str(i)))
    finally:
        for db in others:
            db.dispose()
    assert results == [None] * THREADS  # no IntegrityError reached anyone
    assert shared_state.get(store, "ui.gc_progress") in {str(i) for i in range(THREADS)}


def test_blob_delete_waits_for_the_digest_lock_uploads_take(store):
    """An upload publishing a digest holds its lock; a DELETE of that blob waits for it."""
    digest = "sha256:" + "7" * 64
    with store.write() as conn:
        repo_id = store.ensure_repository(conn, "delete/race")
        store.record_blob(conn, repo_id, digest, 1)
    holder = store.engine.connect()
    holder_tx = holder.begin()
    store.lock_digest(holder, digest)  # as UploadService.finish does
    done = threading.Event()
    results: list[object] = []

    def delete() -> None:
        try:
            results.append(store.unlink_blob("delete/race", digest))
        except Exception as exc:  # reported below
            results.append(exc)
        done.set()

    thread = threading.Thread(target=delete)
    thread.start()
    try:
        # Deterministic: either the DELETE shows up waiting on an advisory lock,
        # or it finished while the lock was held (the bug).
        waiting = False
        for _ in range(1200):
            if done.is_set():
                break
            with store.read() as conn:
                waiting = bool(conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND wait_event = 'advisory' AND datname = current_database()").scalar())
            if waiting:
                break
            done.wait(0.1)
        assert not done.is_set(), "the DELETE went through while an upload held the digest"
        assert waiting
    finally:
        holder_tx.commit()
        holder.close()
        thread.join(60)
    assert results == [True]
