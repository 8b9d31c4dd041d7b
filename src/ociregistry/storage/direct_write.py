"""Appending upload bytes around the page cache (O_DIRECT) when they must reach the disk anyway.

With ``storage.fsync`` on, every byte of a blob is on the disk before its 201. Written
through the page cache, each byte is first copied into a freshly allocated cache page
(which on a busy or virtualised host costs several times the copy itself: 1.8 ms/MiB
of system CPU measured on the bench machine, three times SHA-256's 0.6 ms/MiB), then
written back, then fsynced. Written with O_DIRECT the disk reads the bytes straight
from one reused buffer (0.04 ms/MiB of CPU), and the final fsync only has the file's
metadata and the disk's cache left to flush.

O_DIRECT wants the buffer's address, the length and the file offset aligned to the
device's block (``ALIGN`` covers 512- and 4096-byte blocks). So the bytes are copied
into one page-aligned staging buffer (a copy costs about 0.05 ms/MiB) and written a
full buffer at a time; what cannot be aligned goes through the page cache as before:
the head that brings a file of odd size (an earlier PATCH's end) to a block boundary,
and the tail of a request (``flush``), both under ``ALIGN`` bytes. Mixing the two on
one file is coherent (the kernel writes back and drops cached pages in a direct
write's range; the ranges here never overlap), and the fsync covers both.

The direct writes are then read back into the cache on a read-back thread of its
own (so the next write of the push never waits for it), which the disk does by DMA
(a fraction of the CPU of copying into new cache pages), so that a pull right after
the push finds the blob there as it did before: ranges well behind the write front
by populating a mapping (storage/populate.py, cheaper), the last ones of a request
with readahead(2) (measured in docs/performance.md, Pushes).

With ``storage.read_back_when_idle`` the read-backs wait while uploads write or large
blobs are pulled (storage/write_gate.py): the disk reads them back then, not beside the
push's own writes (measured in docs/performance.md, Pushes, round three).

Where O_DIRECT is refused (tmpfs before Linux 6.6, some network or FUSE file
systems, other platforms) the file is opened and written as before.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import queue
import sys
import threading
import time
from typing import Any

from ociregistry.storage import populate, write_gate

ALIGN = 4096
STAGE = 1 << 20  # bytes per direct write (and per staging buffer)
O_DIRECT: int = getattr(os, "O_DIRECT", 0)

def _load_readahead() -> Any:
    """Linux's readahead(2) (pages into the cache, no copy to user space), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).readahead
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_size_t]
    function.restype = ctypes.c_ssize_t
    return function


_READAHEAD = _load_readahead()
MAX_READ_BACKS = 64  # queued ranges (each holds a duplicated descriptor)
_read_backs: queue.SimpleQueue[tuple[int, int, int, bool]] = queue.SimpleQueue()
_reader_lock = threading.Lock()
_reader: threading.Thread | None = None


READ_STEP = 1 << 20  # bytes per readahead(2) call (the kernel caps one call at the
# device's larger of read_ahead_kb and max_sectors_kb, often 128 KiB and 1 MiB)
GATE_STEP = 8 << 20  # bytes read back between two looks at the write gate
PIECE = 32 << 20  # bytes per queued range behind the write front when read-backs wait
# at a write gate (MAX_READ_BACKS of them hold 2 GiB; populate.STEP's, 128 MiB)


def _read_back_loop() -> None:
    while True:
        fd, offset, length, behind, gate, deadline = _read_backs.get()
        try:
            end = offset + length
            while offset < end:
                if gate is not None:
                    # The disk reads these pages: not while uploads write (write_gate.py).
                    gate.wait_idle(deadline)
                step = min(GATE_STEP, end - offset)
                if not (behind and populate.populate(fd, offset, step)):
                    for start in range(offset, offset + step, READ_STEP):
                        _READAHEAD(fd, start, min(READ_STEP, offset + step - start))
                offset += step
        except Exception:  # noqa: BLE001 - a hint to the cache: losing one costs a disk read
            pass
        finally:
            os.close(fd)


def read_back_later(fd: int, offset: int, length: int, behind: bool = False,
                    gate: write_gate.WriteGate | None = None) -> None:
    """The range into the cache on the process's read-back thread: populated when it is
    ``behind`` the end of the file by populate.LAG (cheaper), else readahead(2); with a
    ``gate``, once no upload writes (or write_gate.MAX_DEFER seconds from now). The
    descriptor is duplicated: the upload may close its own before the read runs."""
    global _reader
    if _READAHEAD is None or _read_backs.qsize() >= MAX_READ_BACKS:
        return  # a hint only: a reader far behind skips it rather than hold descriptors
    with _reader_lock:
        if _reader is None or not _reader.is_alive():
            _reader = threading.Thread(target=_read_back_loop, name="blob-read-back",
                                       daemon=True)
            _reader.start()
    try:
        copy = os.dup(fd)
    except OSError:  # out of descriptors: the push goes on, the pull reads the disk
        return
    _read_backs.put((copy, offset, length, behind, gate, time.monotonic() + write_gate.MAX_DEFER))


def read_backs_done(timeout: float = 30.0) -> bool:
    """Whether every queued read-back has been handed to the kernel (for tests)."""
    deadline = time.monotonic() + timeout
    while not _read_backs.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    return _read_backs.empty()

# Staging buffers, reused across requests (a fresh mapping costs page faults per request).
_free: list[mmap.mmap] = []
_free_lock = threading.Lock()
_KEEP = 16


def _aligned(view: memoryview) -> bool:
    """Whether ``view`` is writable memory starting on a block boundary."""
    if view.readonly:
        return False
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) % ALIGN == 0


def open_direct(path: str, flags: int) -> int | None:
    """``path`` opened with O_DIRECT added, or None when the platform or file system refuses."""
    if not O_DIRECT:
        return None
    try:
        return os.open(path, flags | O_DIRECT)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise


def _take_buffer() -> mmap.mmap:
    with _free_lock:
        if _free:
            return _free.pop()
    return mmap.mmap(-1, STAGE)  # anonymous mappings are page-aligned


def _give_buffer(buffer: mmap.mmap) -> None:
    with _free_lock:
        if len(_free) < _KEEP:
            _free.append(buffer)
            return
    buffer.close()


class DirectAppender:
    """Appends to ``fd`` (opened O_WRONLY | O_APPEND | O_DIRECT) whose size is ``size``."""

    def __init__(self, fd: int, size: int, readahead: bool = True, path: str | None = None,
                 gate: write_gate.WriteGate | None = None) -> None:
        self.fd = fd
        self._gate = gate  # read-backs wait while uploads write (write_gate.py)
        self._readahead = _READAHEAD if readahead and path is not None else None
        self._path = path
        self._read_fd: int | None = None  # the read-backs' own descriptor (_read_back)
        self.disk = size  # bytes in the file (staged bytes not included)
        self._unread = size  # read back (queued) up to here
        self.direct = True
        self._buffer = _take_buffer()
        self._stage = memoryview(self._buffer)
        self._fill = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        pos, end = 0, len(view)
        while pos < end:
            if not self.direct:
                self._write_cached(view[pos:])
                return
            if self._fill == 0 and self.disk % ALIGN:
                # An odd-sized file: the bytes up to the next block boundary go cached.
                take = min(ALIGN - self.disk % ALIGN, end - pos)
                self._write_cached(view[pos:pos + take])
                pos += take
                continue
            whole = (end - pos) - (end - pos) % ALIGN
            if self._fill == 0 and whole and _aligned(view[pos:]):
                # A reader's page-aligned buffer (web/body.py): written as it is.
                pos += self._write_direct(view[pos:pos + whole])
                continue
            take = min(STAGE - self._fill, end - pos)
            self._stage[self._fill:self._fill + take] = view[pos:pos + take]
            self._fill += take
            pos += take
            if self._fill == STAGE:
                self._write_stage()

    def write_many(self, views: list[memoryview]) -> None:
        """``write`` of each view in turn; whole-block, page-aligned buffers (the body
        reader's, web/body.py) as one writev(2) around the cache.

        A direct write of 1 MiB waits for the disk before the next is even issued
        (queue depth one for the stream): several at once let the device work on
        them together (measured in docs/performance.md, Pushes)."""
        if (len(views) < 2 or not self.direct or self._fill or self.disk % ALIGN
                or not all(len(v) % ALIGN == 0 and _aligned(v) for v in views)):
            for view in views:
                self.write(view)
            return
        total = sum(len(v) for v in views)
        try:
            written = os.writev(self.fd, views)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._fall_back()  # the file system takes O_DIRECT opens but not writes
            written = 0
        if written > 0:
            self.disk += written
            self._written()
            if written % ALIGN:
                self._fall_back()
        if written < total:  # short (a full disk says so on the next write) or refused
            rest, skip = [], written
            for view in views:
                if skip >= len(view):
                    skip -= len(view)
                    continue
                rest.append(view[skip:])
                skip = 0
            for view in rest:
                self.write(view)

    def flush(self) -> None:
        """Everything staged into the file: whole blocks directly, the rest cached; the
        request's last written range queued for its read-back."""
        self._write_stage()
        if self._readahead is not None and self.disk > self._unread:
            self._read_back(self._unread, self.disk - self._unread, behind=False)
            self._unread = self.disk

    def discard(self) -> None:
        """Forget the staged bytes (the caller truncates the file to where it was)."""
        self._fill = 0

    def truncated(self, size: int) -> None:
        self._fill = 0
        self.disk = size
        self._unread = min(self._unread, size)

    def _written(self) -> None:
        # Read back what is now populate.LAG behind the write front, in pieces of at
        # least populate.STEP (PIECE when they wait at a gate: more of them queue up);
        # the rest goes at flush() (readahead there: at the end of the file populating
        # is the dearer way).
        upto = self.disk - populate.LAG
        piece = PIECE if self._gate is not None else populate.STEP
        if self._readahead is not None and upto - self._unread >= piece:
            self._read_back(self._unread, upto - self._unread, behind=True)
            self._unread = upto

    def _read_back(self, offset: int, length: int, behind: bool) -> None:
        # Through a descriptor of its own, not a dup() of the writer's: a dup shares
        # the open file description and with it the upload's flock, so a queued
        # read-back kept the session locked and the next PATCH waited for the reads.
        if self._read_fd is None:
            try:
                self._read_fd = os.open(self._path, os.O_RDONLY)  # type: ignore[arg-type]
            except OSError:  # gone (cancelled) or out of descriptors: no hint then
                self._readahead = None
                return
        read_back_later(self._read_fd, offset, length, behind, self._gate)

    def close(self) -> None:
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
        if self._buffer is not None:
            self._stage.release()
            _give_buffer(self._buffer)
            self._buffer = None  # type: ignore[assignment]

    def _write_stage(self) -> None:
        fill, self._fill = self._fill, 0
        aligned = fill - fill % ALIGN
        done = self._write_direct(self._stage[:aligned])
        if done < fill:
            self._write_cached(self._stage[done:fill])

    def _write_direct(self, view: memoryview) -> int:
        """Writes ``view`` (aligned) around the cache, or what O_DIRECT refuses through it."""
        done = 0
        while self.direct and done < len(view):
            try:
                written = os.write(self.fd, view[done:])
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._fall_back()  # the file system takes O_DIRECT opens but not writes
                break
            done += written
            self.disk += written
            if self._readahead is not None and written > 0:
                # Back into the cache by the disk's DMA (a fraction of the CPU of
                # copying into new cache pages): the first pull of the new blob then
                # finds it there, as it did when written through it. On a thread of
                # its own: the next write of the push does not wait for it.
                self._written()
            if written % ALIGN:
                self._fall_back()  # a short odd write: alignment is lost for good
        return done

    def _write_cached(self, view: memoryview) -> None:
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        if flags & O_DIRECT:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~O_DIRECT)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
                self.disk += written
        finally:
            if flags & O_DIRECT and self.direct:
                fcntl.fcntl(self.fd, fcntl.F_SETFL, flags)

    def _fall_back(self) -> None:
        self.direct = False
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~O_DIRECT)
