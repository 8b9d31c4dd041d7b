"""A statement compiled once for a dialect and run through the driver.

SQLAlchemy's statement building costs more than SQLite's answer to a small
lookup or insert; the hot paths (manifest and blob lookups, a tag's events, the
outbox insert of every push) compile theirs once at start-up.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


class Prepared:
    def __init__(self, statement: sa.Executable, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.order = compiled.positiontup if compiled.positional else None

    def args(self, params: dict[str, Any]) -> Any:
        """The driver's parameters: a tuple in the compiled order, or the dict."""
        return tuple(params[name] for name in self.order) if self.order else params

    def run(self, conn: Connection, **params: Any) -> Any:
        return conn.exec_driver_sql(self.sql, self.args(params))

    def run_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        conn.exec_driver_sql(self.sql, [self.args(row) for row in rows])


# Statements of the write path compiled on first use, per dialect and driver (the
# parameter style differs): module-level query functions take only a connection.
_ONCE: dict[tuple[str, str, str], Prepared] = {}


def once(conn: Connection, key: str, build: Any) -> Prepared:
    """The statement ``build()`` makes, compiled once for ``conn``'s dialect;
    ``key`` names it (``module.purpose``) and must not depend on parameter values."""
    dialect = conn.dialect
    cache_key = (dialect.name, dialect.driver, key)
    prepared = _ONCE.get(cache_key)
    if prepared is None:
        prepared = _ONCE[cache_key] = Prepared(build(), dialect)
    return prepared
