"""Upload bytes written around the page cache (storage/direct_write.py): exact bytes
whatever the sizes and offsets, the right open flags, and the fallbacks."""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import random
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ociregistry.storage import direct_write, filesystem
from ociregistry.storage.direct_write import ALIGN, STAGE
from ociregistry.storage.filesystem import FilesystemStorage


def direct_supported(folder: Path) -> bool:
    probe = folder / "probe"
    probe.touch()
    fd = direct_write.open_direct(str(probe), os.O_WRONLY)
    if fd is not None:
        os.close(fd)
    return fd is not None


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemStorage:
    if not direct_supported(tmp_path):
        pytest.skip("this file system refuses O_DIRECT (the page-cache path is tested instead)")
    return FilesystemStorage(str(tmp_path / "root"), fsync=True, direct_writes=True)


def new_upload(storage: FilesystemStorage) -> str:
    upload_id = str(uuid.uuid4())
    storage.create_upload(upload_id)
    return upload_id


def file_of(storage: FilesystemStorage, upload_id: str) -> bytes:
    return Path(storage._upload_file(upload_id)).read_bytes()


def is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & direct_write.O_DIRECT)


def test_requests_of_any_size_and_offset_keep_the_exact_bytes(storage):
    rng = random.Random(16)
    sizes = [1, 100, ALIGN - 1, ALIGN, ALIGN + 1, STAGE, STAGE + 7, 3 * STAGE]
    for _ in range(12):
        upload_id, expect = new_upload(storage), bytearray()
        for _request in range(rng.randint(1, 4)):
            with storage.append_upload(upload_id) as writer:
                assert writer._direct is not None and is_direct(writer._fd)
                assert writer.offset == len(expect)
                for _write in range(rng.randint(0, 5)):
                    data = os.urandom(rng.choice([*sizes, rng.randint(0, 3 * STAGE)]))
                    writer.write(data)
                    expect += data
                assert is_direct(writer._fd)  # set back after each cached head or tail
                writer.save()
            assert file_of(storage, upload_id) == expect


def test_rollback_drops_staged_and_written_bytes(storage):
    upload_id = new_upload(storage)
    head = os.urandom(STAGE + 5000)
    with storage.append_upload(upload_id) as writer:
        writer.write(head)
        writer.save()
    with storage.append_upload(upload_id) as writer:
        base = writer.offset
        writer.write(os.urandom(2 * STAGE + 3))  # partly written, partly staged
        writer.rollback(base)
        tail = os.urandom(ALIGN + 1)
        writer.write(tail)
        writer.rollback(base + 10)  # within staged bytes: the first ten stay
    assert file_of(storage, upload_id) == head + tail[:10]


def test_a_failed_request_leaves_nothing_staged_behind(storage):
    upload_id = new_upload(storage)
    with pytest.raises(RuntimeError), storage.append_upload(upload_id) as writer:
        writer.write(os.urandom(STAGE + ALIGN))
        raise RuntimeError("the body broke off")  # the service would roll back
    # the full staging buffer was written; what was still staged is not
    assert len(file_of(storage, upload_id)) == STAGE


def test_without_fsync_uploads_use_the_page_cache(tmp_path):
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=False)
    upload_id = new_upload(storage)
    with storage.append_upload(upload_id) as writer:
        assert writer._direct is None and not is_direct(writer._fd)
        writer.write(b"x" * (STAGE + 1))
    assert file_of(storage, upload_id) == b"x" * (STAGE + 1)


def test_direct_writes_can_be_turned_off(tmp_path):
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=True, direct_writes=False)
    upload_id = new_upload(storage)
    with storage.append_upload(upload_id) as writer:
        assert writer._direct is None and not is_direct(writer._fd)
        assert writer.write_behind  # the copy into the cache runs on a helper thread
        writer.write(b"z" * (STAGE + 1))
    assert file_of(storage, upload_id) == b"z" * (STAGE + 1)


def test_a_refused_direct_write_falls_back_to_the_page_cache(storage, monkeypatch):
    # Some file systems accept an O_DIRECT open and refuse the write (EINVAL).
    real_write = os.write

    def refusing(fd: int, data) -> int:  # noqa: ANN001
        if is_direct(fd):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(direct_write.os, "write", refusing)
    upload_id = new_upload(storage)
    data = os.urandom(2 * STAGE + 123)
    with storage.append_upload(upload_id) as writer:
        writer.write(data)
        assert not writer._direct.direct and not is_direct(writer._fd)
        writer.write(data)
    assert file_of(storage, upload_id) == data + data


def test_a_refused_direct_open_falls_back_to_the_page_cache(tmp_path, monkeypatch):
    real_open = os.open

    def refusing(path, flags, *args):  # noqa: ANN001, ANN202
        if flags & direct_write.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(direct_write.os, "open", refusing)
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=True, direct_writes=True)
    upload_id = new_upload(storage)
    with storage.append_upload(upload_id) as writer:
        assert writer._direct is None
        writer.write(b"y" * 5000)
    assert file_of(storage, upload_id) == b"y" * 5000
    assert filesystem.open_direct is direct_write.open_direct


def test_page_aligned_buffers_are_written_as_they_are(storage):
    from ociregistry.web.body import _buffer

    upload_id, expect = new_upload(storage), bytearray()
    with storage.append_upload(upload_id) as writer:
        for size in (STAGE, STAGE, 20 * ALIGN + 5, STAGE):
            view = _buffer(size)
            view[:] = os.urandom(size)
            writer.write(view)
            expect += view
            if size == STAGE and len(expect) <= 2 * STAGE:
                # written from the buffer itself: never copied into the staging buffer
                assert bytes(writer._direct._stage[:64]) != bytes(view[:64])
                assert writer._direct._fill == 0 and writer._direct.disk == len(expect)
        # 5 bytes of the odd one were staged; the last MiB filled the stage from there
        assert writer._direct._fill == 5
        assert writer._direct.disk == len(expect) - 5
    assert file_of(storage, upload_id) == expect
    with storage.append_upload(upload_id) as writer:
        view = _buffer(STAGE)
        view[:] = os.urandom(STAGE)
        writer.write(view)  # an odd file size: a cached head, then the rest staged
        expect += view
    assert file_of(storage, upload_id) == expect


def test_directly_written_bytes_are_read_back_into_the_page_cache(storage):
    # a pull right after the push is served from the cache, as before O_DIRECT
    fincore = shutil.which("fincore")
    if direct_write._READAHEAD is None or fincore is None:
        pytest.skip("readahead(2) and util-linux fincore are Linux-only")
    upload_id = new_upload(storage)
    with storage.append_upload(upload_id) as writer:
        assert writer._direct is not None
        writer.write(os.urandom(8 * STAGE))
        writer.write_many(aligned_chunks(STAGE, STAGE, STAGE))  # one writev, one read-back
    assert direct_write.read_backs_done()  # on the read-back thread, after the writes

    def cached() -> int:
        return int(subprocess.run([fincore, "--bytes", "--noheadings", "--output", "RES",
                                   storage._upload_file(upload_id)], capture_output=True,
                                  text=True, check=True).stdout.strip())

    deadline = time.monotonic() + 30  # the kernel's reads complete on their own time
    while cached() < 11 * STAGE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cached() == 11 * STAGE


def test_reading_back_into_the_cache_can_be_turned_off(tmp_path):
    fincore = shutil.which("fincore")
    if not direct_supported(tmp_path) or fincore is None:
        pytest.skip("needs O_DIRECT and util-linux fincore")
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=True, direct_writes=True,
                                cache_new_blobs=False)
    upload_id = new_upload(storage)
    with storage.append_upload(upload_id) as writer:
        assert writer._direct is not None
        writer.write(os.urandom(8 * STAGE))
    out = subprocess.run([fincore, "--bytes", "--noheadings", "--output", "RES",
                          storage._upload_file(upload_id)], capture_output=True, text=True,
                         check=True).stdout
    assert int(out.strip()) == 0  # written around the cache and left out of it


def test_read_backs_are_skipped_when_the_reader_is_far_behind(monkeypatch, tmp_path):
    # each queued read-back holds a duplicated descriptor: a reader that lags (a slow
    # disk under a 2 GiB push) must not run the process out of descriptors
    if direct_write._READAHEAD is None:
        pytest.skip("readahead(2) is Linux-only")
    waiting: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(direct_write.MAX_READ_BACKS):
        waiting.put((-1, 0, 0))  # stand-ins: this queue is never read here
    monkeypatch.setattr(direct_write, "_read_backs", waiting)
    fd = os.open(tmp_path / "blob", os.O_CREAT | os.O_WRONLY)
    try:
        before = len(os.listdir("/proc/self/fd"))
        direct_write.read_back_later(fd, 0, 4096)
        assert waiting.qsize() == direct_write.MAX_READ_BACKS
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        os.close(fd)


def test_a_push_goes_on_when_the_read_back_cannot_get_a_descriptor(storage, monkeypatch):
    # the read-back is a hint: a process out of descriptors still stores every byte
    def no_descriptor(fd: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(direct_write.os, "dup", no_descriptor)
    upload_id = new_upload(storage)
    data = os.urandom(3 * STAGE)
    with storage.append_upload(upload_id) as writer:
        assert writer._direct is not None
        writer.write(data)
    assert file_of(storage, upload_id) == data


def aligned_chunks(*sizes: int) -> list[memoryview]:
    from ociregistry.web.body import _buffer

    views = []
    for size in sizes:
        view = _buffer(size)
        view[:] = os.urandom(size)
        views.append(view)
    return views


def test_several_aligned_buffers_go_out_in_one_direct_writev(storage, monkeypatch):
    # a writer behind the receiver gets the waiting chunks together (core/hashpipe.py):
    # one writev keeps them all in flight on the device
    real_writev, calls = os.writev, []

    def counting(fd: int, buffers) -> int:  # noqa: ANN001
        calls.append((is_direct(fd), [len(b) for b in buffers]))
        return real_writev(fd, buffers)

    monkeypatch.setattr(direct_write.os, "writev", counting)
    upload_id = new_upload(storage)
    chunks = aligned_chunks(STAGE, STAGE, STAGE)
    tail = aligned_chunks(20 * ALIGN + 5)
    with storage.append_upload(upload_id) as writer:
        writer.write_many(chunks)
        writer.write_many(tail)  # one odd chunk: the ordinary path
        assert writer.offset == 3 * STAGE + 20 * ALIGN + 5
    assert calls == [(True, [STAGE, STAGE, STAGE])]
    assert file_of(storage, upload_id) == b"".join(map(bytes, chunks + tail))


def test_writev_of_odd_or_unaligned_chunks_keeps_the_exact_bytes(storage):
    rng = random.Random(7)
    upload_id, expect = new_upload(storage), bytearray()
    for _request in range(6):
        with storage.append_upload(upload_id) as writer:
            for _batch in range(3):
                sizes = [rng.choice([STAGE, 2 * ALIGN, ALIGN + 3, 100]) for _ in range(3)]
                chunks = aligned_chunks(*sizes)
                if rng.random() < 0.3:
                    chunks.append(memoryview(os.urandom(STAGE)))  # not page-aligned
                writer.write_many(chunks)
                expect += b"".join(map(bytes, chunks))
    assert file_of(storage, upload_id) == expect


def test_a_short_writev_writes_the_rest(storage, monkeypatch):
    # a writev may take fewer bytes than asked (a full disk answers on the next call)
    real_writev = os.writev

    def short(fd: int, buffers) -> int:  # noqa: ANN001
        return real_writev(fd, [buffers[0][:ALIGN * 3]])

    monkeypatch.setattr(direct_write.os, "writev", short)
    upload_id = new_upload(storage)
    chunks = aligned_chunks(STAGE, STAGE)
    with storage.append_upload(upload_id) as writer:
        writer.write_many(chunks)
        assert writer._direct.direct
    assert file_of(storage, upload_id) == b"".join(map(bytes, chunks))


def test_a_refused_direct_writev_falls_back_to_the_page_cache(storage, monkeypatch):
    def refusing(fd: int, buffers) -> int:  # noqa: ANN001
        raise OSError(errno.EINVAL, "Invalid argument")

    real_write = os.write

    def refusing_write(fd: int, data) -> int:  # noqa: ANN001
        if is_direct(fd):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(direct_write.os, "writev", refusing)
    monkeypatch.setattr(direct_write.os, "write", refusing_write)
    upload_id = new_upload(storage)
    chunks = aligned_chunks(STAGE, STAGE)
    with storage.append_upload(upload_id) as writer:
        writer.write_many(chunks)
        assert not writer._direct.direct and not is_direct(writer._fd)
    assert file_of(storage, upload_id) == b"".join(map(bytes, chunks))


def test_a_full_disk_during_writev_fails_the_write(storage, monkeypatch):
    def full(fd: int, buffers) -> int:  # noqa: ANN001
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_write.os, "writev", full)
    upload_id = new_upload(storage)
    with pytest.raises(OSError, match="No space"), storage.append_upload(upload_id) as writer:
        writer.write_many(aligned_chunks(STAGE, STAGE))
    assert file_of(storage, upload_id) == b""


def test_a_queued_read_back_does_not_hold_the_upload_lock(storage, monkeypatch):
    # the next PATCH of the session takes the file lock (flock) as soon as this one
    # ends; a read-back still queued must not keep it (a flock lives as long as any
    # descriptor of its open file description: a dup() of the writer's kept it)
    if direct_write._READAHEAD is None:
        pytest.skip("readahead(2) is Linux-only")
    import threading

    release = threading.Event()
    real = direct_write._READAHEAD

    def slow_readahead(fd: int, offset: int, length: int) -> int:
        release.wait(30)  # a disk far behind
        return real(fd, offset, length)

    monkeypatch.setattr(direct_write, "_READAHEAD", slow_readahead)
    upload_id = new_upload(storage)
    try:
        with storage.append_upload(upload_id) as writer:
            writer.write_many(aligned_chunks(STAGE, STAGE))
        other = os.open(storage._upload_file(upload_id), os.O_RDONLY)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if held
        finally:
            os.close(other)
    finally:
        release.set()
        assert direct_write.read_backs_done()


def cached_bytes(path: str) -> int:
    return int(subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                              capture_output=True, text=True, check=True).stdout.strip())


@pytest.mark.parametrize("populating", [True, False])
def test_a_long_upload_is_read_back_whole_either_way(storage, monkeypatch, populating):
    # ranges populate.LAG behind the write front are populated (storage/populate.py),
    # the request's last ones read ahead; without MADV_POPULATE_READ, all read ahead
    from ociregistry.storage import populate

    if direct_write._READAHEAD is None or shutil.which("fincore") is None:
        pytest.skip("readahead(2) and util-linux fincore are Linux-only")
    if populating and not populate.available():
        pytest.skip("no libc mmap/madvise here")
    if not populating:
        monkeypatch.setattr(populate, "_LIBC", None)
    calls: list[tuple[int, int, bool]] = []
    real = direct_write.read_back_later

    def recording(fd: int, offset: int, length: int, behind: bool = False,
                  gate: object = None) -> None:
        calls.append((offset, length, behind))
        real(fd, offset, length, behind, gate)

    monkeypatch.setattr(direct_write, "read_back_later", recording)
    size = populate.LAG + 6 * STAGE
    upload_id = new_upload(storage)
    with storage.append_upload(upload_id) as writer:
        for _ in range(size // (2 * STAGE)):
            writer.write_many(aligned_chunks(STAGE, STAGE))
    assert direct_write.read_backs_done()
    # every byte once, in order; the first ranges behind, the last one not
    assert sum(length for _, length, _ in calls) == size
    assert [offset for offset, _, _ in calls] == sorted({offset for offset, _, _ in calls})
    assert calls[0][2] and not calls[-1][2] and calls[-1][1] == populate.LAG
    path = storage._upload_file(upload_id)
    deadline = time.monotonic() + 30
    while cached_bytes(path) < size and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cached_bytes(path) == size


def test_populating_a_range_cut_off_meanwhile_is_harmless(tmp_path):
    # a rollback may truncate the upload before its read-back runs: the mapping is
    # never touched, so no SIGBUS, only a hint given up
    from ociregistry.storage import populate

    if not populate.available():
        pytest.skip("no libc mmap/madvise here")
    fd = os.open(tmp_path / "blob", os.O_CREAT | os.O_RDWR)
    try:
        os.write(fd, b"x" * ALIGN)
        assert populate.populate(fd, 0, 4 * STAGE) is True
        assert populate.populate(fd, 2 * STAGE, STAGE) is True
    finally:
        os.close(fd)
