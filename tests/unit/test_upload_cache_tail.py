"""Once flushed, an upload leaves the page cache but for its tail
(storage.cache_upload_tail_mib, storage/flush_ahead.py): which pages stay resident is
read from the kernel (mincore), and no byte of the file changes."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import mmap
import os
import time
import uuid
from pathlib import Path

import pytest

from ociregistry.storage import flush_ahead
from ociregistry.storage.filesystem import FilesystemStorage
from ociregistry.storage.flush_ahead import FLUSH_EVERY

MiB = 1 << 20
PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def resident(path: str) -> list[bool]:
    """Per page of the file: is it in the page cache now?"""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
    try:
        pages = (size + PAGE - 1) // PAGE
        vec = (ctypes.c_ubyte * pages)()
        start = ctypes.c_char.from_buffer(mapping)
        try:
            rc = _libc.mincore(ctypes.c_void_p(ctypes.addressof(start)),
                               ctypes.c_size_t(size), vec)
        finally:
            del start
        assert rc == 0, os.strerror(ctypes.get_errno())
        return [bool(v & 1) for v in vec]
    finally:
        mapping.close()


def cached_mib(path: str, start: int, end: int) -> float:
    pages = resident(path)[start // PAGE:end // PAGE]
    return sum(pages) * PAGE / MiB


def idle(writer) -> None:
    deadline = time.monotonic() + 30
    while writer._ahead._running:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def write_upload(storage: FilesystemStorage, upload_id: str, mib: int,
                 digest: hashlib._Hash) -> None:
    """``mib`` MiB in one request, each flush ahead let end before the next MiB."""
    with storage.append_upload(upload_id) as writer:
        for _ in range(mib):
            data = os.urandom(MiB)
            digest.update(data)
            writer.write(data)
            idle(writer)


def new_storage(tmp_path: Path, keep: int | None) -> tuple[FilesystemStorage, str, list]:
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=True, cache_upload_tail=keep)
    dropped: list[int] = []
    storage.on_upload_cache_drop = lambda: dropped.append(1)
    upload_id = str(uuid.uuid4())
    storage.create_upload(upload_id)
    return storage, upload_id, dropped


def test_all_but_the_tail_of_a_flushed_upload_leaves_the_cache(tmp_path: Path) -> None:
    storage, upload_id, dropped = new_storage(tmp_path, 8 * MiB)
    digest = hashlib.sha256()
    write_upload(storage, upload_id, 32, digest)
    path = storage._upload_file(upload_id)
    # the last flush began at 32 MiB: everything before 24 MiB is durable and dropped
    assert cached_mib(path, 0, 24 * MiB) == 0
    assert cached_mib(path, 24 * MiB, 32 * MiB) == 8
    assert len(dropped) == 6  # the flushes begun at 12, 16, ... 32 MiB each dropped (metric)
    with open(path, "rb") as f:  # read back from the disk: the same bytes
        assert hashlib.file_digest(f, "sha256").hexdigest() == digest.hexdigest()


def test_the_next_request_of_a_session_goes_on_dropping(tmp_path: Path) -> None:
    # a chunked push: every PATCH opens the file afresh and flushes its own bytes
    storage, upload_id, dropped = new_storage(tmp_path, 4 * MiB)
    digest = hashlib.sha256()
    write_upload(storage, upload_id, 12, digest)
    write_upload(storage, upload_id, 12, digest)
    path = storage._upload_file(upload_id)
    assert cached_mib(path, 0, 20 * MiB) == 0
    assert cached_mib(path, 20 * MiB, 24 * MiB) == 4
    with open(path, "rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == digest.hexdigest()


@pytest.mark.parametrize("keep", [None, 64 * MiB])
def test_an_upload_within_the_tail_or_with_no_limit_stays_cached(tmp_path: Path,
                                                                  keep) -> None:
    storage, upload_id, dropped = new_storage(tmp_path, keep)
    write_upload(storage, upload_id, 3 * FLUSH_EVERY // MiB + 1, hashlib.sha256())
    path = storage._upload_file(upload_id)
    size = os.path.getsize(path)
    assert cached_mib(path, 0, size) == size / MiB  # flushed, and all still in memory
    assert dropped == []


def test_pages_not_yet_flushed_are_never_dropped(tmp_path: Path) -> None:
    # no flush has run (fewer than FLUSH_EVERY bytes): with no tail kept at all, the
    # dirty pages stay, since DONTNEED is only asked for once a flush made them durable
    storage, upload_id, dropped = new_storage(tmp_path, 0)
    write_upload(storage, upload_id, FLUSH_EVERY // MiB - 1, hashlib.sha256())
    path = storage._upload_file(upload_id)
    assert cached_mib(path, 0, FLUSH_EVERY) == FLUSH_EVERY // MiB - 1
    assert dropped == []


def test_a_file_system_refusing_the_advice_loses_nothing(tmp_path: Path, monkeypatch) -> None:
    # the drop is only advice: refused (EINVAL, as some file systems answer), the upload
    # stays whole and usable, its pages stay cached, and no drop is counted
    def refuse(fd: int, offset: int, length: int, advice: int) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(flush_ahead.os, "posix_fadvise", refuse)
    storage, upload_id, dropped = new_storage(tmp_path, 4 * MiB)
    digest = hashlib.sha256()
    write_upload(storage, upload_id, 16, digest)
    path = storage._upload_file(upload_id)
    assert dropped == []
    assert storage.upload_size(upload_id) == 16 * MiB  # not discarded
    assert cached_mib(path, 0, 16 * MiB) == 16
    with open(path, "rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == digest.hexdigest()
