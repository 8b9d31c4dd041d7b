"""Keeping the disk flushing an upload's file while it is still being written.

With ``storage.fsync`` on, a blob's bytes must be on the disk before its 201. On
a virtual disk whose host caches writes (most cloud VMs), written pages only
reach the device when a flush asks for it, and a flush's cost grows with what is
waiting: with ``sync_file_range(WRITE)`` alone, the fsync that publishes a
256 MiB blob waited 230-300 ms for the host to write it all out, a quarter of
the push. So while an upload is written, an ``fdatasync`` of its file runs on a
pool thread whenever ``every`` more bytes have arrived since the last one began
(at most one in flight per file): the device takes the bytes while the rest is
still received and hashed, and the publishing fsync waits only for the tail
(4-30 ms for the same push; docs/performance.md, "Pushes, round four").

The flush opens the file on a descriptor of its own, read-only: never a ``dup``
of the writer's (that would share the upload's ``flock`` and hold up the next
PATCH of the session). A flush still running when its request ends goes on by
itself; if the upload is removed meanwhile it flushes a file nobody names, or
finds none.

A failed flush discards the upload (its name is removed; the session then answers
BLOB_UPLOAD_UNKNOWN and the client pushes the blob again). It cannot be left to
the publishing fsync: Linux reports a writeback error once to each descriptor
open when it happened, and to one opened later only if nobody has seen it yet.
This flush has seen it, and the PUT that publishes a chunked upload opens the
file afresh, so its fsync could succeed over bytes that never reached the disk.

With ``keep_tail`` (``storage.cache_upload_tail_mib``, off by default), once a flush
has made the bytes durable, all but the upload's last ``keep_tail`` bytes are
dropped from the page cache (``POSIX_FADV_DONTNEED``, over what the finished
fdatasync covered only): the next writes reuse the pages. On a VM whose host takes
back the memory the guest frees, a fresh page costs 1-1.4 ms of CPU per MiB against
0.3 for a recycled one, and a push of 256 MiB in 8 MiB PATCHes went from 385 to
579 MiB/s (docs/performance.md, "Pushes, round five"). A blob no longer than
``keep_tail`` stays cached whole; a longer one's head is read from the disk by its
first pull.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from ociregistry.storage.durable import ProcessPool

FLUSH_EVERY = 4 << 20
# Flushes ahead running at once per process; more wait in the pool's queue (each
# upload has at most one in flight or queued). Apart from the publication's
# directory flushes (durable.py), which must never wait behind these.
executor = ProcessPool(8, "flush-ahead")


log = logging.getLogger(__name__)


def _flush(path: str, drop: tuple[int, int] | None = None) -> bool:
    """fdatasync ``path``; then drop the byte range ``drop`` (start, end) from the page
    cache. False if the file is gone or was discarded."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # finished (renamed into place) or cancelled: nothing to start early
    try:
        try:
            os.fdatasync(fd)
        except OSError as exc:
            log.warning("upload %s discarded: flushing it to the disk failed: %s", path, exc)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # published or cancelled meanwhile (a published blob's fsync saw it)
            return False
        if drop is not None:
            try:
                os.posix_fadvise(fd, drop[0], drop[1] - drop[0], os.POSIX_FADV_DONTNEED)
            except OSError:
                return False  # only advice (a file system may refuse it): still durable
        return True
    finally:
        os.close(fd)


class FlushAhead:
    """Starts an ``fdatasync`` of ``path`` each time ``every`` more bytes were written."""

    def __init__(self, path: str, offset: int, every: int = FLUSH_EVERY,
                 on_start: Callable[[], None] | None = None, keep_tail: int | None = None,
                 on_drop: Callable[[], None] | None = None) -> None:
        self.path = path
        self.on_start = on_start  # metrics (runtime.py)
        self.on_drop = on_drop  # metrics: a range left the page cache
        self.every = every
        self.keep_tail = keep_tail  # None: every page stays cached
        self._dropped = 0  # dropped from the page cache up to here
        self._started_at = offset  # bytes written when the last flush began
        self._lock = threading.Lock()
        self._running = False
        self.flushes = 0  # started (tests)

    def wrote(self, offset: int) -> None:
        """The file now holds ``offset`` bytes."""
        if offset - self._started_at < self.every or self._running:
            return
        with self._lock:
            if self._running:
                return
            self._running = True
        self._started_at = offset
        try:
            executor().submit(self._run, offset)
        except RuntimeError:
            self._running = False  # the interpreter is exiting: the publishing fsync does it
            return
        self.flushes += 1
        if self.on_start is not None:
            self.on_start()

    def _run(self, upto: int) -> None:
        try:
            end = upto - self.keep_tail if self.keep_tail is not None else 0
            drop = (self._dropped, end) if end > self._dropped else None
            if _flush(self.path, drop) and drop is not None:
                self._dropped = end
                if self.on_drop is not None:
                    self.on_drop()
        finally:
            self._running = False
