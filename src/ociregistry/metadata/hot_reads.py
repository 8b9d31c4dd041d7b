"""The hot read statements (manifest by tag or digest, a blob's size, a tags page),
run on a pooled driver connection without SQLAlchemy's per-statement machinery.

A SQLAlchemy ``Connection`` plus ``exec_driver_sql`` costs about 45 µs per
statement on top of what SQLite needs (a Connection object, an execution
context, a result proxy, Row objects): more than the lookup itself. These reads
are single statements (SQLite: each its own snapshot in WAL mode; PostgreSQL:
one statement, rolled back when the connection returns to the pool), so they run
on ``engine.raw_connection()`` (the same pool, with its pre-ping) and a driver
cursor. A driver error is raised as the ``sqlalchemy.exc.DBAPIError`` subclass
SQLAlchemy itself would raise, and a lost connection is invalidated, so the
fault handling (faults.py: 503 on a database outage) sees what it always saw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine


class Statement:
    """A statement compiled once for the engine's dialect, run on a driver cursor."""

    def __init__(self, statement: sa.Executable, engine: Engine) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.order = compiled.positiontup if compiled.positional else None
        self.engine = engine

    def _args(self, params: dict[str, Any]) -> Any:
        return tuple(params[name] for name in self.order) if self.order else params

    def first(self, **params: Any) -> tuple | None:
        """The first row, or None."""
        def work(cursor: Any) -> tuple | None:
            cursor.execute(self.sql, self._args(params))
            return cursor.fetchone()

        return run(self.engine, work, self.sql)


def tags_page(engine: Engine, repository: Statement, page: Statement, name: str,
              last: str, n: int | None) -> list[str] | None:
    """A page of a repository's tags (None: no such repository), both statements on one
    pooled connection, the names read straight from the cursor (no Row per tag)."""
    def work(cursor: Any) -> list[str] | None:
        cursor.execute(repository.sql, repository._args({"name": name}))
        row = cursor.fetchone()
        if row is None:
            return None
        cursor.execute(page.sql, page._args({"repo": row[0], "last": last, "n": n}))
        return [tag for tag, in cursor]

    return run(engine, work, page.sql)


def run(engine: Engine, work: Callable[[Any], Any], sql: str) -> Any:
    """``work(cursor)`` on a pooled driver connection (``sql``: named in errors)."""
    dialect = engine.dialect
    fairy = engine.raw_connection()  # pool errors arrive as SQLAlchemy's already
    try:
        cursor = fairy.cursor()
        try:
            return work(cursor)
        finally:
            cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, fairy.dbapi_connection, None)
        if lost:
            fairy.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error,
            connection_invalidated=lost, dialect=dialect) from exc
    finally:
        fairy.close()  # back to the pool (PostgreSQL: rolled back there)
