"""The write path's statements on the transaction's driver cursor (metadata/prepared.py
``Prepared.rows`` and ``many``): the same answers as through SQLAlchemy's Connection,
part of the same transaction (a block that fails leaves nothing), and driver errors
raised as the SQLAlchemy errors the fault handling knows. tests/cluster/
test_pg_prepared_rows.py runs the same checks on PostgreSQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from ociregistry.faults import unavailable
from ociregistry.metadata import schema as t
from ociregistry.metadata import write_statements as w
from ociregistry.metadata.prepared import Prepared
from ociregistry.metadata.store import MetadataStore


def _digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    db = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    db.create_schema()
    yield db
    db.dispose()


def check_same_answers(db: MetadataStore) -> None:
    """Every result form the callers use, against SQLAlchemy's own for the same SQL."""
    r = t.repositories
    with db.write() as conn:
        ids = [w.insert_repository(conn, f"team/app{i}", 1.0) for i in range(3)]
        assert all(isinstance(i, int) for i in ids)
        assert w.insert_repository(conn, "team/app0", 2.0) is None  # exists: no row back
    by_name = Prepared(sa.select(r.c.id, r.c.name).where(r.c.name > sa.bindparam("after"))
                       .order_by(r.c.name), db.engine.dialect)
    with db.write() as conn:
        fast, slow = by_name.rows(conn, after="team/app0"), by_name.run(conn, after="team/app0")
        assert fast.all() == [tuple(row) for row in slow.all()]
        assert fast.first() == (ids[1], "team/app1")
        assert fast.scalar() == ids[1]
        assert fast.scalars() == ids[1:]
        assert list(fast) == [(ids[1], "team/app1"), (ids[2], "team/app2")]
        with pytest.raises(sa_exc.MultipleResultsFound):
            fast.one()
        none = by_name.rows(conn, after="zzz")
        assert none.first() is None and none.scalar() is None and none.mapping() is None
        with pytest.raises(sa_exc.NoResultFound):
            none.scalar_one()
        one = by_name.rows(conn, after="team/app1")
        assert one.one() == (ids[2], "team/app2") and one.scalar_one() == ids[2]
        assert one.mapping() == {"id": ids[2], "name": "team/app2"}
        # UPDATE: the rows it changed; no description, no rows.
        rename = Prepared(r.update().where(r.c.name.like(sa.bindparam("p")))
                          .values(created_at=sa.bindparam("now")), db.engine.dialect)
        changed = rename.rows(conn, p="team/%", now=5.0)
        assert changed.rowcount == 3 and changed.all() == []
        # executemany
        w.create_upload(conn, id="u0", repository_id=ids[0], algorithm="sha256", size=0,
                        created_at=1.0, updated_at=1.0, owner=None)
        row = w.get_upload(conn, "team/app0", "u0")
        assert row is not None and row["id"] == "u0" and row["size"] == 0
        assert w.save_upload(conn, "u0", size=7, updated_at=2.0, hash_state=b"\x00\xff",
                             storage_state=None)
        row = w.get_upload(conn, "team/app0", "u0")
        assert row is not None and row["size"] == 7 and row["hash_state"] == b"\x00\xff"
        assert w.get_upload(conn, "team/app1", "u0") is None  # another repository's
        assert w.delete_upload(conn, "u0") == (ids[0], 7)
        assert w.delete_upload(conn, "u0") is None
        manifest = w.insert_manifest(conn, repository_id=ids[0], digest=_digest(1),
                                     media_type="x", size=2, payload=b"{}", subject=None,
                                     artifact_type=None, annotations=None, created_at=1.0)
        w.insert_manifest_blobs(conn, manifest, [_digest(2), _digest(3)])
        listed = conn.execute(sa.select(t.manifest_blobs.c.digest).where(
            t.manifest_blobs.c.manifest_id == manifest).order_by(t.manifest_blobs.c.digest))
        assert list(listed.scalars()) == sorted([_digest(2), _digest(3)])


def check_one_transaction(db: MetadataStore) -> None:
    """Statements on the driver cursor belong to the block's transaction: a block that
    raises after them leaves nothing; one that ends commits them with the rest."""
    with pytest.raises(RuntimeError), db.write() as conn:
        repo = db.ensure_repository(conn, "gone/app")  # insert_repository: rows()
        conn.execute(t.blobs.insert().values(digest=_digest(9), size=1, touched_at=1.0))
        db.record_blob(conn, repo, _digest(9), 1)
        raise RuntimeError("the push fails after its statements")
    with db.read() as conn:
        assert w.repository_id(conn, "gone/app") is None
        assert conn.execute(sa.select(sa.func.count()).select_from(t.blobs)).scalar() == 0
    with db.write() as conn:
        repo = db.ensure_repository(conn, "kept/app")
        db.record_blob(conn, repo, _digest(8), 1)
    with db.read() as conn:
        assert w.repository_id(conn, "kept/app") == repo
        assert w.linked_blob_sizes(conn, repo, [_digest(8)]) == {_digest(8): 1}


def check_errors(db: MetadataStore) -> None:
    """A constraint violation is SQLAlchemy's IntegrityError (a bug: no 503), the block
    rolls back, and the pool goes on handing out working connections."""
    with db.write() as conn:
        repo = db.ensure_repository(conn, "team/dup")
        w.create_upload(conn, id="same", repository_id=repo, algorithm="sha256", size=0,
                        created_at=1.0, updated_at=1.0, owner=None)
    with pytest.raises(sa_exc.IntegrityError) as caught, db.write() as conn:
        w.create_upload(conn, id="same", repository_id=repo, algorithm="sha256", size=0,
                        created_at=1.0, updated_at=1.0, owner=None)
    assert unavailable(caught.value) is None
    assert "uploads" in str(caught.value)  # the statement is named
    with db.read() as conn:
        assert w.get_upload(conn, "team/dup", "same") is not None


def test_same_answers_as_through_the_connection(store: MetadataStore) -> None:
    check_same_answers(store)


def test_one_transaction(store: MetadataStore) -> None:
    check_one_transaction(store)


def test_constraint_errors(store: MetadataStore) -> None:
    check_errors(store)


def test_an_unusable_database_is_sqlalchemys_operational_error(tmp_path: Path) -> None:
    """No schema (as a database that cannot answer): OperationalError, which the
    fault handling answers with a 503, as it did before the driver cursor."""
    db = MetadataStore(f"sqlite:///{tmp_path / 'no-schema.db'}")
    try:
        with pytest.raises(sa_exc.OperationalError) as caught, db.write() as conn:
            w.repository_id(conn, "a/b")
        assert unavailable(caught.value) == "database"
        db.create_schema()
        with db.write() as conn:
            assert w.repository_id(conn, "a/b") is None
    finally:
        db.dispose()


def test_a_write_lock_never_granted_is_sqlalchemys_operational_error(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE runs on the driver connection (engine.py): a database locked by
    another writer past the busy timeout is still the error the fault handling answers
    with 503, and the store works again once the lock is released."""
    import sqlite3

    path = tmp_path / "registry.db"
    db = MetadataStore(f"sqlite:///{path}")
    try:
        db.create_schema()
        db.engine.dispose()
        with db.engine.connect() as conn:  # the pool's only connection: waits 0.1 s, not 60
            conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=100")
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(sa_exc.OperationalError) as caught, db.write():
                pass
            assert unavailable(caught.value) == "database"
            assert "BEGIN IMMEDIATE" in str(caught.value)
        finally:
            holder.rollback()
            holder.close()
        with db.write() as conn:
            assert w.insert_repository(conn, "a/b", 1.0) is not None
    finally:
        db.dispose()
