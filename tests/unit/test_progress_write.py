"""Upload progress commits without a sync; nothing else does, and it still commits."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ociregistry.metadata import schema
from ociregistry.metadata.store import MetadataStore

FULL, NORMAL = 2, 1


def synchronous(conn: sa.Connection) -> int:
    return conn.exec_driver_sql("PRAGMA synchronous").scalar()


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    db = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    schema.metadata.create_all(db.engine)
    return db


def test_progress_write_is_relaxed_and_the_pool_stays_durable(store: MetadataStore) -> None:
    with store.progress_write() as conn:
        assert synchronous(conn) == NORMAL
        repo = store.ensure_repository(conn, "team/app")
        store.create_upload(conn, "0123456789abcdef", repo, "sha256")
    # Every pooled connection a durable write could get is back at FULL.
    conns = [store.engine.connect() for _ in range(3)]
    try:
        assert [synchronous(c) for c in conns] == [FULL] * 3
    finally:
        for c in conns:
            c.close()
    with store.write() as conn:
        assert synchronous(conn) == FULL
    assert store.get_upload("team/app", "0123456789abcdef") is not None
    assert store.save_upload("0123456789abcdef", 5, b"state")
    assert store.get_upload("team/app", "0123456789abcdef").size == 5


def test_a_failed_progress_write_rolls_back_and_restores_the_pool(store: MetadataStore) -> None:
    with pytest.raises(RuntimeError), store.progress_write() as conn:
        store.ensure_repository(conn, "team/gone")
        raise RuntimeError("abandon")
    with store.read() as conn:
        assert store.repository_id(conn, "team/gone") is None
        assert synchronous(conn) == FULL


def test_not_durable_stores_stay_relaxed(tmp_path: Path) -> None:
    db = MetadataStore(f"sqlite:///{tmp_path / 'r.db'}", durable=False)
    schema.metadata.create_all(db.engine)
    with db.progress_write() as conn:
        assert synchronous(conn) == NORMAL
    with db.write() as conn:
        assert synchronous(conn) == NORMAL
