"""tests/unit/test_upload_row_read.py on PostgreSQL (the driver hands bytea as a memoryview)."""

from __future__ import annotations

from ociregistry.metadata.store import MetadataStore
from tests.cluster.pg import migrated_store  # noqa: F401  (the "store" fixture)
from tests.unit.test_upload_row_read import check_upload_rows


def test_the_upload_row_read_on_a_driver_connection(store: MetadataStore) -> None:
    assert store.dialect == "postgresql"
    check_upload_rows(store)
