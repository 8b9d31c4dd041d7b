"""Queries of upload sessions: progress, saved hash and storage state, leases."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import hot_reads, quota_accounting, write_statements
from ociregistry.metadata import schema as t


@dataclass
class UploadRow:
    id: str
    repository_id: int
    algorithm: str
    size: int
    created_at: float
    updated_at: float
    owner: str | None = None
    hash_state: bytes | None = None
    storage_state: str | None = None
    lease_token: str | None = None
    lease_until: float | None = None

    @property
    def storage(self) -> dict[str, Any] | None:
        return json.loads(self.storage_state) if self.storage_state else None



class UploadStore:
    """The upload part of MetadataStore (which provides read() and write())."""

    _writer: sa.Engine  # the engine, BEGIN IMMEDIATE on SQLite
    dialect: str
    events: Any  # event_outbox.Outbox
    writer_queue: Any = None  # writer_queue.WriterQueue on SQLite
    engine: sa.Engine
    _get_upload_statement: Any = None  # hot_reads.Statement, made on first use

    def _queued(self) -> AbstractContextManager[None]:
        """Before BEGIN IMMEDIATE: wait for the write lock in the kernel (writer_queue.py)."""
        return self.writer_queue.hold() if self.writer_queue is not None else nullcontext()

    def read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    @contextmanager
    def progress_write(self) -> Iterator[Connection]:
        """A write transaction whose commit does not wait for the disk.

        For an upload session's progress (opening it, each PATCH, leases): the
        bytes a PATCH wrote are not synced either (only finishing the blob syncs
        its file), so syncing the row that describes them buys nothing. After a
        power cut such a commit may be lost with the bytes; a session then
        resumes from the file's own size (re-hashing it) or is unknown to the
        client, which starts again: as after an expiry. The next synced commit
        of anyone carries it to the disk too (SQLite's WAL and PostgreSQL's log
        are written in order), so it never outlives a later durable one.
        SQLite: the WAL is not flushed after it (wal_sync.py); PostgreSQL:
        synchronous_commit off, for this transaction.
        """
        with self._queued(), self._writer.begin() as conn, self.events.transaction(conn):
            if self.dialect == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield conn

    def create_upload(
        self, conn: Connection, upload_id: str, repo_id: int, algorithm: str,
        owner: str | None = None,
    ) -> None:
        now = time.time()
        write_statements.create_upload(conn, id=upload_id, repository_id=repo_id,
                                       algorithm=algorithm, size=0, created_at=now,
                                       updated_at=now, owner=owner)

    def count_uploads(self, conn: Connection, owner: str) -> int:
        """Open upload sessions of one owner (indexed)."""
        query = sa.select(sa.func.count()).select_from(t.uploads).where(t.uploads.c.owner == owner)
        return int(conn.execute(query).scalar() or 0)

    def get_upload(self, name: str, upload_id: str) -> UploadRow | None:
        """An upload session, only if it belongs to the named repository.

        Every PATCH and PUT reads it first: one statement, so on a pooled driver
        connection (hot_reads.py) rather than through a SQLAlchemy Connection."""
        statement = self._get_upload_statement
        if statement is None:
            statement = self._get_upload_statement = hot_reads.Statement(
                write_statements.get_upload_query(), self.engine)
        row = statement.first(id=upload_id, name=name)
        if row is None:
            return None
        values = dict(zip(write_statements.UPLOAD_ROW_COLUMNS, row, strict=True))
        if values["hash_state"] is not None:
            values["hash_state"] = bytes(values["hash_state"])  # PostgreSQL: a memoryview
        return UploadRow(**values)

    def save_upload(
        self,
        upload_id: str,
        size: int,
        hash_state: bytes | None = None,
        storage_state: dict[str, Any] | None = None,
        lease_token: str | None = None,
    ) -> bool:
        """Record an upload's progress. With a lease token: only if that lease is
        still held, and release it. False when the session (or lease) is gone."""
        u = t.uploads
        values: dict[str, Any] = {
            "size": size,
            "updated_at": time.time(),
            "hash_state": hash_state,
            "storage_state": json.dumps(storage_state) if storage_state is not None else None,
        }
        query = u.update().where(u.c.id == upload_id)
        if lease_token is not None:
            query = query.where(u.c.lease_token == lease_token)
            values.update(lease_token=None, lease_until=None)
        with self.progress_write() as conn:
            old_size, quota_ids = quota_accounting.upload_quotas(self, conn, upload_id)
            if lease_token is None:  # every PATCH on the filesystem: compiled once
                saved = write_statements.save_upload(conn, upload_id, **values)
            else:
                saved = conn.execute(query.values(**values)).rowcount > 0
            if not saved:
                return False
            # Over a quota: QuotaExceeded, and the saved size stays where it was.
            quota_accounting.upload_changed(self, conn, None, quota_ids, size - old_size)
            return True

    def take_upload_lease(self, upload_id: str, token: str, seconds: float) -> bool:
        """Hold (or renew) the right to append to an upload; False if another holds it."""
        u = t.uploads
        now = time.time()
        query = (
            u.update()
            .where(
                u.c.id == upload_id,
                sa.or_(u.c.lease_token.is_(None), u.c.lease_until < now,
                       u.c.lease_token == token),
            )
            .values(lease_token=token, lease_until=now + seconds)
        )
        with self.progress_write() as conn:
            return conn.execute(query).rowcount > 0

    def release_upload_lease(self, upload_id: str, token: str) -> None:
        u = t.uploads
        with self.progress_write() as conn:
            conn.execute(
                u.update()
                .where(u.c.id == upload_id, u.c.lease_token == token)
                .values(lease_token=None, lease_until=None)
            )

    def delete_upload(self, conn: Connection, upload_id: str) -> bool:
        """Remove a session's row; its saved bytes leave its namespaces' usage."""
        row = write_statements.delete_upload(conn, upload_id)
        if row is None:
            return False
        quota_accounting.upload_changed(self, conn, row[0], None, -row[1])
        return True

    def stale_uploads(self, before: float) -> list[str]:
        with self.read() as conn:
            return list(
                conn.execute(
                    sa.select(t.uploads.c.id).where(t.uploads.c.updated_at < before)
                ).scalars()
            )

    def upload_ids(self) -> set[str]:
        with self.read() as conn:
            return set(conn.execute(sa.select(t.uploads.c.id)).scalars())
