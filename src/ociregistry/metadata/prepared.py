"""A statement compiled once for a dialect and run through the driver.

SQLAlchemy's statement building costs more than SQLite's answer to a small
lookup or insert; the hot paths (manifest and blob lookups, a tag's events, the
outbox insert of every push) compile theirs once at start-up.

``run`` goes through the ``Connection`` (``exec_driver_sql``: an execution
context, a result proxy and its column map, events), about 25 µs a statement
on top of SQLite's own few. The small write requests (upload POST, PATCH, PUT,
mount, manifest PUT: 4 to 13 statements each) use ``rows`` and ``many``
instead: the same SQL on a cursor of the connection's own driver connection, so
inside the same transaction, every row fetched at once (``Rows``). A driver
error is raised as the ``sqlalchemy.exc.DBAPIError`` subclass SQLAlchemy would
raise (a lost connection invalidated), as metadata/hot_reads.py does for reads,
so the fault handling (faults.py) sees what it always saw.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


class Prepared:
    def __init__(self, statement: sa.Executable, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.order = compiled.positiontup if compiled.positional else None
        # The parameters in the compiled order in one C call (a generator costs more).
        self._pick = None
        if self.order:
            pick = itemgetter(*self.order)
            self._pick = pick if len(self.order) > 1 else lambda params: (pick(params),)

    def args(self, params: dict[str, Any]) -> Any:
        """The driver's parameters: a tuple in the compiled order, or the dict."""
        return self._pick(params) if self._pick is not None else params

    def run(self, conn: Connection, **params: Any) -> Any:
        return conn.exec_driver_sql(self.sql, self.args(params))

    def run_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        conn.exec_driver_sql(self.sql, [self.args(row) for row in rows])

    def rows(self, conn: Connection, **params: Any) -> Rows:
        """``run`` on the transaction's driver cursor: the rows (tuples) and rowcount."""
        dbapi = conn.connection.dbapi_connection
        cursor = dbapi.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, self.args(params))
            # RETURNING rows are read to the end: SQLite only then finishes the statement.
            return Rows(cursor.fetchall() if cursor.description else [], cursor.rowcount,
                        cursor.description)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, dbapi, exc, self.sql) from exc
        finally:
            cursor.close()

    def many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """``run_many`` on the transaction's driver cursor."""
        dbapi = conn.connection.dbapi_connection
        cursor = dbapi.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(self.sql, [self.args(row) for row in rows])
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, dbapi, exc, self.sql) from exc
        finally:
            cursor.close()


class Rows:
    """A statement's rows, fetched: the part of SQLAlchemy's result the callers use."""

    __slots__ = ("_rows", "rowcount", "_description")

    def __init__(self, rows: list[tuple], rowcount: int, description: Any) -> None:
        self._rows, self.rowcount, self._description = rows, rowcount, description

    def __iter__(self) -> Any:
        return iter(self._rows)

    def all(self) -> list[tuple]:
        return self._rows

    def first(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def one(self) -> tuple:
        if len(self._rows) != 1:
            raise sa.exc.NoResultFound() if not self._rows else sa.exc.MultipleResultsFound()
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def mapping(self) -> dict[str, Any] | None:
        """The first row as a dict of column name -> value, or None."""
        if not self._rows:
            return None
        return dict(zip([d[0] for d in self._description], self._rows[0], strict=True))


def begin_immediate(conn: Connection) -> None:
    """SQLite's BEGIN IMMEDIATE on the connection's driver connection (engine.py)."""
    dbapi = conn.connection.dbapi_connection
    try:
        dbapi.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, dbapi, exc, "BEGIN IMMEDIATE") from exc


def _wrapped(conn: Connection, dbapi: Any, exc: Exception, sql: str) -> sa.exc.DBAPIError:
    dialect = conn.dialect
    lost = dialect.is_disconnect(exc, dbapi, None)
    if lost:
        conn.invalidate(exc)
    return sa.exc.DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=lost, dialect=dialect)


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
