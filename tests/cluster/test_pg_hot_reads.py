"""The hot read queries (tags pages from the driver's cursor, manifest by tag) on
PostgreSQL: the same answers as on SQLite (tests/unit/test_hot_reads.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ociregistry.metadata.store import MetadataStore
from tests.unit.test_hot_reads import check_tag_pages


@pytest.fixture
def store(pg_url: str) -> Iterator[MetadataStore]:
    db = MetadataStore(pg_url)
    assert db.dialect == "postgresql"
    db.create_schema()
    yield db
    db.dispose()


def test_tag_pages_on_postgresql(store: MetadataStore) -> None:
    check_tag_pages(store)
