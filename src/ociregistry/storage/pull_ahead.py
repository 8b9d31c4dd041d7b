"""A cold large blob read from the disk as two streams while it is sent.

A blob GET is one ``sendfile``: where the blob is not in the page cache (an older
blob, or the head of a new one that ``storage.cache_upload_tail_mib`` let go), the
kernel reads it ahead as one sequential stream. The bench machine's disk gives
1-2.3 GB/s to one stream and 2.7-3.3 GB/s to two (docs/performance.md, "Pushes,
round five"). So a GET of a blob of ``MIN_SIZE`` or more whose uncached part is
long enough reads the second half of that part into the page cache on a pool
thread (``pread`` into one reused buffer), while the sendfile reads the first half
and then finds the rest in memory. It only reads: the bytes sent are still the
file's, through sendfile. The reader stops when the response is closed (a client
that hung up), and at most ``THREADS`` run per process; a GET finding none free
sends as before.

What is cached is asked without reading: ``mincore`` of a mapping of the file that
nothing touches (a ``preadv2(RWF_NOWAIT)`` probe starts a readahead where it misses).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
import threading
from collections.abc import Callable

from ociregistry.storage.durable import ProcessPool

MIN_SIZE = 32 << 20  # smaller blobs: one stream's readahead is as quick
STEP = 4 << 20  # pread size, and the grain of the look for what is cached
THREADS = 2
executor = ProcessPool(THREADS, "pull-ahead")
_running = threading.BoundedSemaphore(THREADS)  # helpers at work in this process

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
_MAP_FAILED = ctypes.c_void_p(-1).value


def residency(fd: int, size: int) -> bytes | None:
    """One byte per page of the file, 1 where the page is in the page cache (mincore
    of a mapping that is never touched, so nothing is read); None if it cannot tell."""
    addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == _MAP_FAILED:
        return None
    try:
        vec = ctypes.create_string_buffer((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE)
        if _libc.mincore(addr, size, vec) != 0:
            return None
        return bytes(b & 1 for b in vec.raw) if vec.raw.strip(b"\0\1") else vec.raw
    finally:
        _libc.munmap(addr, size)


def plan(fd: int, size: int) -> tuple[int, int] | None:
    """The range a helper should read for a GET of this file, or None: the second half
    of what is not cached up to the cached tail a new blob keeps
    (``storage.cache_upload_tail_mib``)."""
    if size < MIN_SIZE:
        return None
    pages = residency(fd, size)
    if pages is None or pages.count(0) * mmap.PAGESIZE < MIN_SIZE:
        return None  # in memory, or what the disk has to give is short: one stream does it
    end = min(len(pages.rstrip(b"\1")) * mmap.PAGESIZE, size)
    return end // 2 // STEP * STEP, end


def read_into_cache(path: str, start: int, end: int, stop: threading.Event) -> int:
    """pread ``[start, end)`` of ``path`` (filling the page cache); bytes read."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return 0  # deleted meanwhile: the GET has its own descriptor
    buffer = bytearray(STEP)
    offset = start
    try:
        while offset < end and not stop.is_set():
            got = os.preadv(fd, [memoryview(buffer)[:min(STEP, end - offset)]], offset)
            if got <= 0:
                break
            offset += got
    except OSError as exc:
        log.warning("reading %s ahead of its pull failed: %s", path, exc)
    finally:
        os.close(fd)
    return offset - start


def start(path: str, fd: int, size: int,
          on_start: Callable[[], None] | None = None) -> threading.Event | None:
    """Reads part of the blob open as ``fd`` ahead of its GET if that pays; setting the
    Event returned stops it."""
    span = plan(fd, size)
    if span is None or not _running.acquire(blocking=False):
        return None
    stop = threading.Event()

    def run() -> None:
        try:
            read_into_cache(path, span[0], span[1], stop)
        finally:
            _running.release()

    try:
        executor().submit(run)
    except RuntimeError:  # the interpreter is exiting
        _running.release()
        return None
    if on_start is not None:
        on_start()
    return stop
