"""The write path's statements on the driver cursor (metadata/prepared.py ``rows``)
on PostgreSQL: the checks of tests/unit/test_prepared_rows.py, and a connection the
server cut mid-transaction raised as the error the fault handling answers with 503."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy.exc as sa_exc

from ociregistry.faults import unavailable
from ociregistry.metadata import write_statements as w
from ociregistry.metadata.store import MetadataStore
from tests.unit.test_prepared_rows import check_errors, check_one_transaction, check_same_answers


@pytest.fixture
def store(pg_url: str) -> Iterator[MetadataStore]:
    db = MetadataStore(pg_url)
    assert db.dialect == "postgresql"
    db.create_schema()
    yield db
    db.dispose()


def test_same_answers_on_postgresql(store: MetadataStore) -> None:
    check_same_answers(store)


def test_one_transaction_on_postgresql(store: MetadataStore) -> None:
    check_one_transaction(store)


def test_constraint_errors_on_postgresql(store: MetadataStore) -> None:
    check_errors(store)


def test_a_connection_cut_mid_transaction_is_a_database_outage(store: MetadataStore) -> None:
    """The server ends the backend between two statements of a write: the next
    statement's error is SQLAlchemy's, marked invalidated (503, not 500), and the
    pool replaces the connection for the next request."""
    with pytest.raises(sa_exc.DBAPIError) as caught, store.write() as conn:
        w.repository_id(conn, "a/b")
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with store.engine.connect() as killer:
            killer.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        w.repository_id(conn, "a/b")
    assert caught.value.connection_invalidated
    assert unavailable(caught.value) == "database"
    with store.write() as conn:
        assert w.repository_id(conn, "a/b") is None
