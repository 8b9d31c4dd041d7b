"""Write transactions on the driver connection (metadata/driver_transaction.py) on
PostgreSQL: the checks of tests/unit/test_driver_transaction.py, and a connection the
server cut before COMMIT raised as the database outage the fault handling answers
with 503 (the pool replaces it)."""

from __future__ import annotations

import pytest
import sqlalchemy.exc as sa_exc

from ociregistry.faults import unavailable
from ociregistry.metadata import write_statements as w
from ociregistry.metadata.store import MetadataStore
from tests.cluster.pg import migrated_store  # noqa: F401  (the "store" fixture)
from tests.unit.test_driver_transaction import check_commit_and_rollback


def test_commit_and_rollback_on_postgresql(store: MetadataStore) -> None:
    check_commit_and_rollback(store)


def test_a_connection_cut_before_commit_is_a_database_outage(store: MetadataStore) -> None:
    with pytest.raises(sa_exc.DBAPIError) as caught, store.write() as conn:
        w.insert_repository(conn, "cut/before-commit", 1.0)
        # On the driver's cursor: no SQLAlchemy bookkeeping, the driver's COMMIT fails.
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        cursor.close()
        assert not conn.in_transaction()
        with store.engine.connect() as killer:
            killer.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    assert caught.value.connection_invalidated
    assert unavailable(caught.value) == "database"
    with store.write() as conn:
        assert w.repository_id(conn, "cut/before-commit") is None
