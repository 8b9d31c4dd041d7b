"""Alembic migrations, run programmatically (no alembic.ini needed)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

if TYPE_CHECKING:
    from ociregistry.metadata.store import MetadataStore

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")


def _config(store: MetadataStore) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["engine"] = store.engine
    return config


def upgrade(store: MetadataStore, revision: str = "head") -> None:
    command.upgrade(_config(store), revision)


def pending(store: MetadataStore) -> bool:
    """True when the database schema is behind the code."""
    head = ScriptDirectory.from_config(_config(store)).get_current_head()
    with store.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current != head
