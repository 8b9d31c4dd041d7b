"""``MetadataStore.write()`` begun and ended on the driver connection
(metadata/driver_transaction.py): committed when the block ends, nothing left when it
fails, the same with Core statements inside (SQLAlchemy's autobegun bookkeeping on the
same transaction), the SQLite write lock taken up front, and a failed COMMIT raised as
SQLAlchemy's error. tests/cluster/test_pg_driver_transaction.py runs the shared checks
on PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from ociregistry.metadata import schema as t
from ociregistry.metadata import write_statements as w
from ociregistry.metadata.store import MetadataStore


class Boom(Exception):
    pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    db = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    db.create_schema()
    yield db
    db.dispose()


def _names(db: MetadataStore) -> list[str]:
    with db.read() as conn:
        return sorted(conn.execute(sa.select(t.repositories.c.name)).scalars())


def check_commit_and_rollback(db: MetadataStore) -> None:
    """Driver statements only, Core statements only, both; ended well or by an error."""
    r = t.repositories
    with db.write() as conn:
        w.insert_repository(conn, "tx/driver", 1.0)
    with db.write() as conn:
        conn.execute(r.insert().values(name="tx/core", created_at=1.0))
    with db.write() as conn:
        w.insert_repository(conn, "tx/both-a", 1.0)
        conn.execute(r.insert().values(name="tx/both-b", created_at=1.0))
        w.insert_repository(conn, "tx/both-c", 1.0)
    for core in (False, True):
        with pytest.raises(Boom), db.write() as conn:
            w.insert_repository(conn, f"tx/lost-{core}", 1.0)
            if core:
                conn.execute(r.insert().values(name=f"tx/lost-core-{core}", created_at=1.0))
            raise Boom
    assert _names(db) == ["tx/both-a", "tx/both-b", "tx/both-c", "tx/core", "tx/driver"]
    # A statement that fails (a duplicate) inside the block: the block's error, nothing kept.
    with pytest.raises(sa_exc.IntegrityError), db.write() as conn:
        w.insert_repository(conn, "tx/dup", 1.0)
        conn.execute(r.insert().values(name="tx/driver", created_at=1.0))
    assert "tx/dup" not in _names(db)
    # The pool's connections are fine afterwards, with and without Core statements.
    for _ in range(10):
        with db.write() as conn:
            assert w.repository_id(conn, "tx/driver") is not None
        with db.write() as conn:
            assert conn.execute(sa.select(r.c.id).where(r.c.name == "tx/core")).scalar()


def test_commit_and_rollback(store: MetadataStore) -> None:
    check_commit_and_rollback(store)


def test_the_write_lock_is_taken_up_front(store: MetadataStore, tmp_path: Path) -> None:
    """BEGIN IMMEDIATE on the driver: another writer can't begin until the block ends."""
    other = sqlite3.connect(tmp_path / "registry.db", timeout=0.05, isolation_level=None)
    try:
        with store.write():
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_a_failed_commit_is_sqlalchemys_error(store: MetadataStore) -> None:
    """A foreign key checked at COMMIT (deferred) fails it: SQLAlchemy's IntegrityError,
    nothing kept, and the connection serves the next write."""
    with pytest.raises(sa_exc.IntegrityError), store.write() as conn:
        conn.connection.dbapi_connection.execute("PRAGMA defer_foreign_keys=ON")
        w.upsert_tag(conn, 424242, "v1", 434343, 1.0)  # neither row exists
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.tags)).scalar() == 0
    for _ in range(10):
        with store.write() as conn:
            w.insert_repository(conn, "tx/after", 1.0)
            assert w.repository_id(conn, "tx/after") is not None
