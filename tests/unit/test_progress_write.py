"""Durable SQLite commits flush the WAL after the write lock (wal_sync.py); upload
progress commits don't flush; both commit."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from ociregistry.metadata import schema
from ociregistry.metadata.store import MetadataStore
from ociregistry.metadata.wal_sync import WalSync


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    db = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    schema.metadata.create_all(db.engine)
    return db


class CountingSync(WalSync):
    """Counts the callers and records whether the write lock was free at each flush."""

    def __init__(self, database: str, engine: sa.Engine) -> None:
        super().__init__(database)
        self.engine, self.calls, self.lock_free = engine, 0, []

    def sync(self) -> None:
        self.calls += 1
        super().sync()

    def _flush(self) -> None:
        # Another connection can take the write lock now: it was released before the flush.
        raw = self.engine.raw_connection()
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("ROLLBACK")
            self.lock_free.append(True)
        finally:
            raw.close()
        super()._flush()


def test_a_write_flushes_the_wal_after_releasing_the_lock(store: MetadataStore,
                                                          tmp_path: Path) -> None:
    counting = CountingSync(str(tmp_path / "registry.db"), store.engine)
    store.wal_sync = counting
    with store.write() as conn:
        store.ensure_repository(conn, "team/app")
    assert counting.calls == 1 and counting.lock_free == [True]
    assert counting.flushes == 1 and os.path.exists(counting.path)


def test_progress_writes_commit_without_a_flush(store: MetadataStore, tmp_path: Path) -> None:
    counting = CountingSync(str(tmp_path / "registry.db"), store.engine)
    store.wal_sync = counting
    with store.progress_write() as conn:
        repo = store.ensure_repository(conn, "team/app")
        store.create_upload(conn, "0123456789abcdef", repo, "sha256")
    assert store.save_upload("0123456789abcdef", 5, b"state")
    assert counting.calls == 0
    assert store.get_upload("team/app", "0123456789abcdef").size == 5


def test_a_failed_write_rolls_back_and_flushes_nothing(store: MetadataStore,
                                                       tmp_path: Path) -> None:
    counting = CountingSync(str(tmp_path / "registry.db"), store.engine)
    store.wal_sync = counting
    with pytest.raises(RuntimeError), store.write() as conn:
        store.ensure_repository(conn, "team/gone")
        raise RuntimeError("abandon")
    with store.read() as conn:
        assert store.repository_id(conn, "team/gone") is None
    assert counting.calls == 0


def test_connections_leave_the_flush_to_the_store(store: MetadataStore) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_concurrent_committers_share_flushes(tmp_path: Path) -> None:
    (tmp_path / "db-wal").write_bytes(b"x")
    sync = WalSync(str(tmp_path / "db"))
    gate, started = threading.Event(), threading.Event()
    real = sync._flush

    def slow_flush() -> None:
        started.set()
        gate.wait(30)
        real()

    sync._flush = slow_flush  # type: ignore[method-assign]
    first = threading.Thread(target=sync.sync)
    first.start()
    assert started.wait(30)
    # These commit while the first flush runs: one later flush covers them all.
    others = [threading.Thread(target=sync.sync) for _ in range(5)]
    for t in others:
        t.start()
    while sync._requested < 6:
        threading.Event().wait(0.01)
    gate.set()
    for t in [first, *others]:
        t.join(30)
    assert sync.flushes == 2 and sync._synced == 6


def test_only_sqlite_files_get_a_syncer() -> None:
    assert WalSync.for_url("sqlite:///:memory:") is None
    assert WalSync.for_url("postgresql://u@h/db") is None
    assert WalSync.for_url("sqlite:////data/registry.db").path == "/data/registry.db-wal"
