"""Alembic migrations, run programmatically (no alembic.ini needed).

Alembic's own INFO lines (plugin set-up, "Context impl", one per revision) are
kept out of the logs: ``upgrade`` returns the revisions before and after, and
the caller says what happened in one line.
"""

from __future__ import annotations

import logging
import os
from typing import Protocol

# Before alembic is imported (it logs its plugin set-up then): warnings and errors
# still show, the chatter does not.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402


class MetadataStore(Protocol):
    """What migrations need of the store: its engine (no import of store.py, which
    calls ``upgrade``)."""

    engine: Engine

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")


def _config(store: MetadataStore) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["engine"] = store.engine
    return config


def current_revision(store: MetadataStore) -> str | None:
    """The database's schema revision (None: an empty database)."""
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(store: MetadataStore, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to ``revision``; the revisions (before, after)."""
    before = current_revision(store)
    command.upgrade(_config(store), revision)
    return before, current_revision(store)


def describe(before: str | None, after: str | None) -> str:
    """One line for operators: what an upgrade did."""
    if before == after:
        return f"database schema is up to date (revision {after})"
    return f"database schema upgraded from revision {before or 'none'} to {after}"


def pending(store: MetadataStore) -> bool:
    """True when the database schema is behind the code."""
    head = ScriptDirectory.from_config(_config(store)).get_current_head()
    return current_revision(store) != head
