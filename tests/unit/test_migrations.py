"""The Alembic migrations build exactly the schema the code declares."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ociregistry.metadata import migrate
from ociregistry.metadata.schema import metadata
from ociregistry.metadata.store import MetadataStore


def test_migrations_match_the_declared_schema(tmp_path):
    store = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    store.create_schema()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert not migrate.pending(store)


def test_a_fresh_database_reports_pending_migrations(tmp_path):
    store = MetadataStore(f"sqlite:///{tmp_path / 'empty.db'}")
    assert migrate.pending(store)
