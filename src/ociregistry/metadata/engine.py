"""Engine creation: SQLite (WAL, serialised writers) or PostgreSQL, same code above."""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

PG_CONNECT_TIMEOUT = 10  # seconds, unless the URL gives connect_timeout
# SQLite: how long a writer waits for the write lock (busy handler, writer_queue.py).
SQLITE_BUSY_TIMEOUT = 60.0


def create_engine(url: str, pool_size: int = 5, durable: bool = True) -> Engine:
    """``durable``: SQLite syncs its WAL at every commit (PostgreSQL does by default)."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, durable)
    # pre-ping: a connection the server closed while it sat in the pool (a restart,
    # a failover, an idle timeout) is replaced on checkout instead of failing the
    # request; a disconnect seen in use invalidates every older pooled connection.
    # connect_timeout: a host that drops packets fails a request in seconds, not minutes.
    connect_args = {}
    if "connect_timeout" not in sa.engine.make_url(url).query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT
    return sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                            pool_pre_ping=True, connect_args=connect_args)


def _sqlite_engine(url: str, durable: bool) -> Engine:
    path = sa.engine.make_url(url).database
    # (a "file:" URI names its file inside the URI: making its "directory" would make
    # a directory named "file:" under the working directory)
    if path and path != ":memory:" and not path.startswith("file:"):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    engine = sa.create_engine(url, pool_size=8, max_overflow=16, pool_timeout=60)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event issue BEGIN itself (see below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit returns once its WAL frames are on disk, so a 201 outlives
        # a power cut. NORMAL syncs only at checkpoints: the last commits may be lost.
        cursor.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # (MetadataStore.write() has queued it first: writer_queue.py.)
        # Writers take the write lock up front: two read-then-write transactions
        # can then never deadlock, and every check-then-write is serialised
        # (this is what makes GC and manifest pushes exclusive).
        # Readers issue no BEGIN at all: each SELECT is its own consistent
        # snapshot in WAL mode, and the hot paths (manifest HEAD/GET, blob HEAD)
        # are single statements.
        if conn.get_execution_options().get("immediate"):
            # On the driver connection: every write transaction starts here, and the
            # Connection's execution machinery costs more than the statement.
            # prepared.begin_immediate raises a driver error as SQLAlchemy's.
            from ociregistry.metadata.prepared import begin_immediate

            begin_immediate(conn)

    return engine
