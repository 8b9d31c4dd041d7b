"""Reading a file range into the page cache by mapping it and MADV_POPULATE_READ (Linux).

The read-back of a blob written around the cache (storage/direct_write.py) costs its
new cache pages. readahead(2) allocates and inserts every 4 KiB page on its own
(0.17-0.27 ms/MiB of CPU on the bench machine); a populated mapping is filled by the
page-fault path, which reads the kernel's large folios, a few per MiB: 0.05-0.07
ms/MiB, but only for ranges some MiB behind the end of the file. Right at the end
(the fault's read-around window crossing it) the kernel falls back to single pages
and the mapping's set-up and tear-down make it dearer than readahead (0.45-0.49).
So the appender hands over ranges that far behind the write front (``LAG``) and
reads the last ones back with readahead(2); measured in docs/performance.md, Pushes.

The call waits for the disk; libc is called through ctypes, which releases the GIL
(Python's mmap.madvise holds it). Nothing ever touches the mapping, so a range cut
off meanwhile (an upload rolled back) fails the call (EFAULT) instead of raising
SIGBUS.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import sys
from typing import Any

LAG = 8 << 20  # bytes behind the end of the file before a range is populated
STEP = 2 << 20  # bytes mapped at a time (bounds the transient mapping)
_MADV_POPULATE_READ = 22  # Linux 5.14
_PROT_READ = 1
_MAP_SHARED = 1
_MAP_FAILED = ctypes.c_void_p(-1).value


def _load() -> tuple[Any, Any, Any] | None:
    """libc's mmap, madvise and munmap, or None off Linux (or without them)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        map_ = getattr(libc, "mmap64", None) or libc.mmap
        advise, unmap = libc.madvise, libc.munmap
    except (OSError, AttributeError):
        return None
    map_.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                     ctypes.c_int, ctypes.c_int64]
    map_.restype = ctypes.c_void_p
    advise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advise.restype = ctypes.c_int
    unmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    unmap.restype = ctypes.c_int
    return map_, advise, unmap


_LIBC = _load()


def available() -> bool:
    return _LIBC is not None


def populate(fd: int, offset: int, length: int) -> bool:
    """The range's pages into the cache; False when this kernel can't (no
    MADV_POPULATE_READ before Linux 5.14: the caller uses readahead(2), and so does
    every later call). A range that fails otherwise (cut off, no memory) is given up:
    the read-back is a hint."""
    global _LIBC
    if _LIBC is None:
        return False
    map_, advise, unmap = _LIBC
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    end = offset + length
    while start < end:
        size = min(STEP, end - start)
        address = map_(None, size, _PROT_READ, _MAP_SHARED, fd, start)
        if address is None or address == _MAP_FAILED:
            return True
        try:
            if advise(address, size, _MADV_POPULATE_READ) != 0:
                if ctypes.get_errno() == errno.EINVAL:
                    _LIBC = None
                    return False
                return True
        finally:
            unmap(address, size)
        start += size
    return True
