"""A write transaction begun and ended on the driver connection, not by SQLAlchemy.

``MetadataStore.write()`` ran ``Engine.begin()``: a ``RootTransaction``, its begin
and commit events, the transactional context and the commit's bookkeeping cost
about as much CPU as SQLite's own COMMIT, on every small write request (a mount, a
manifest PUT: py-spy, callgrind; see docs/performance.md). Their statements already
run on the driver's cursor (prepared.py), so the transaction's ends go there too:

- SQLite: ``BEGIN IMMEDIATE`` on the driver connection (the write lock up front, as
  engine.py's begin hook does for ``Engine.begin``); PostgreSQL: the driver opens
  the transaction with the first statement, as it did under SQLAlchemy.
- The block gets a ``Connection`` as before: code that runs a Core statement on it
  (quotas, annotations, GC) makes SQLAlchemy autobegin its bookkeeping on the same
  driver transaction (the plain engine: its begin hook issues nothing), and then
  SQLAlchemy's own commit or rollback ends it.
- Otherwise the driver's ``commit()``/``rollback()`` end it; a driver error is raised
  as SQLAlchemy's (prepared._wrapped: a lost connection invalidated), so faults.py
  sees what it always saw. The pool's reset-on-return stays as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine

from ociregistry.metadata.prepared import _wrapped, begin_immediate


@contextmanager
def driver_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction on ``engine`` (the plain engine, not the ``immediate`` one):
    committed when the block ends without an error, else rolled back."""
    conn = engine.connect()
    try:
        if conn.dialect.name == "sqlite":
            begin_immediate(conn)
        try:
            yield conn
        except BaseException:
            _end(conn, commit=False)
            raise
        _end(conn, commit=True)
    finally:
        conn.close()


def _end(conn: Connection, commit: bool) -> None:
    if conn.invalidated:
        return  # the connection was lost: nothing to end (the pool replaces it)
    if conn.in_transaction():  # SQLAlchemy autobegan: its commit ends the driver's
        if commit:
            conn.commit()
        else:
            conn.rollback()
        return
    dbapi = conn.connection.dbapi_connection
    try:
        if commit:
            dbapi.commit()  # type: ignore[union-attr]
        else:
            dbapi.rollback()  # type: ignore[union-attr]
    except conn.dialect.loaded_dbapi.Error as exc:
        if commit:
            raise _wrapped(conn, dbapi, exc, "COMMIT") from exc
        # A failed rollback under another error: that error is the one to raise; the
        # pool's reset (another rollback) discards the connection if it is broken.
        _wrapped(conn, dbapi, exc, "ROLLBACK")
