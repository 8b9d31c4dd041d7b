"""Durable SQLite commits without holding the write lock through the disk flush.

With ``synchronous=FULL`` SQLite fsyncs its WAL inside COMMIT, while it still
holds the database's single write lock: every other writer, in every worker,
waits for that flush, so concurrent pushes queue behind each other's disk
round trips (on a virtual disk a few ms each, most of a small push).

Instead the connections commit with ``synchronous=NORMAL`` (the WAL is written
but not flushed; SQLite stays consistent after a power cut, only the last
commits may be missing), and ``MetadataStore.write()`` then calls ``sync()``,
which fsyncs the WAL file *after* the lock is released and before the request
answers. So a 201 still means "on disk", exactly as with FULL; meanwhile the
next writer already runs, and committers that arrive while a flush is under way
share the next one (group commit).

Why an fsync of the WAL file is enough: in WAL mode a commit is the frames
appended to that one file, in order; fsync flushes all of its written pages,
so it makes durable every commit written before it started, by any process.
A checkpoint that moves frames into the database file syncs both files itself
(NORMAL does that), and only then may SQLite restart the WAL from its start or,
when the last connection closes, delete it: a WAL that is gone holds nothing
unsynced. A WAL file new since the last flush (first commit, or recreated) gets
its directory flushed too, so its name survives as well as its bytes.
"""

from __future__ import annotations

import os
import threading


class WalSync:
    """Group fsync of one SQLite database's WAL file, shared by a process's threads."""

    def __init__(self, database: str) -> None:
        self.path = os.path.abspath(database) + "-wal"
        self._cond = threading.Condition()
        self._requested = 0  # tickets handed out, one per commit to make durable
        self._synced = 0  # every ticket up to this one is on disk
        self._syncing = False
        self._inode: int | None = None  # the WAL file whose directory entry is flushed
        self.flushes = 0  # fsyncs done (tests and metrics: fewer than commits under load)

    @classmethod
    def for_url(cls, url: str) -> WalSync | None:
        """A syncer for a SQLite database file, None for anything else."""
        if not url.startswith("sqlite"):
            return None
        import sqlalchemy as sa

        database = sa.engine.make_url(url).database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return cls(database)

    def sync(self) -> None:
        """Return once every commit this thread made before calling is on disk."""
        with self._cond:
            self._requested += 1
            ticket = self._requested
            while self._synced < ticket and self._syncing:
                self._cond.wait()
            if self._synced >= ticket:
                return  # a flush that started after our commit covered it
            self._syncing = True
            covered = self._requested  # each of these committed before this flush starts
        ok = False
        try:
            self._flush()
            ok = True
        finally:
            with self._cond:
                self._syncing = False
                if ok:
                    self._synced = max(self._synced, covered)
                self._cond.notify_all()

    def _flush(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed into the database file and removed: already synced
        try:
            os.fsync(fd)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        self.flushes += 1
        if inode != self._inode:
            directory = os.open(os.path.dirname(self.path), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._inode = inode
