"""An upload's file flushed while it is written (storage/flush_ahead.py): the flushes
start every FLUSH_EVERY bytes, one at a time, on a descriptor of their own (never
holding the session's lock), a flush that outlives its upload is harmless, and one
that fails discards the upload."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from ociregistry.core.errors import BlobUploadUnknown
from ociregistry.core.uploads import UploadService
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage import flush_ahead
from ociregistry.storage.filesystem import FilesystemStorage
from ociregistry.storage.flush_ahead import FLUSH_EVERY

MiB = 1 << 20


class Flushes:
    """Records which file each flush ahead covered and how big it was then, and can
    hold them (a disk far behind); the real fdatasync still runs."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.done = threading.Semaphore(0)
        self._real = os.fdatasync

    def __call__(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        self.seen.append((path, os.fstat(fd).st_size))
        self.started.set()
        self.hold.wait(30)
        try:
            self._real(fd)
        finally:
            self.done.release()


@pytest.fixture
def flushes(monkeypatch) -> Flushes:
    spy = Flushes()
    monkeypatch.setattr(flush_ahead.os, "fdatasync", spy)
    return spy


def idle(ahead: flush_ahead.FlushAhead) -> None:
    """Until the flush that just ended has marked itself done."""
    deadline = time.monotonic() + 30
    while ahead._running:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def new_upload(storage: FilesystemStorage) -> str:
    upload_id = str(uuid.uuid4())
    storage.create_upload(upload_id)
    return upload_id


def test_a_long_upload_is_flushed_while_it_is_written(tmp_path: Path, flushes) -> None:
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=True)
    upload_id = new_upload(storage)
    path = os.path.realpath(storage._upload_file(upload_id))
    data = os.urandom(MiB)
    ended = 0
    with storage.append_upload(upload_id) as writer:
        for _ in range(3 * FLUSH_EVERY // MiB + 1):
            writer.write(data)
            while ended < writer._ahead.flushes:  # one at a time: let each end
                assert flushes.done.acquire(timeout=30)
                ended += 1
            idle(writer._ahead)
    assert writer._ahead.flushes == 3
    # each flush covered the upload's own file, while it still grew
    assert {p for p, _ in flushes.seen} == {path}
    assert all(size < 3 * FLUSH_EVERY + MiB for _, size in flushes.seen)
    assert os.path.getsize(path) == 3 * FLUSH_EVERY + MiB


def test_at_most_one_flush_is_in_flight_per_upload(tmp_path: Path, flushes) -> None:
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=True)
    upload_id = new_upload(storage)
    flushes.hold.clear()  # the first flush waits for the disk
    try:
        with storage.append_upload(upload_id) as writer:
            for _ in range(4 * FLUSH_EVERY // MiB):
                writer.write(b"y" * MiB)
            assert flushes.started.wait(30)
            assert writer._ahead.flushes == 1  # the others were not started behind it
    finally:
        flushes.hold.set()
    assert flushes.done.acquire(timeout=30)


def test_a_flush_in_flight_does_not_hold_the_upload_lock(tmp_path: Path, flushes) -> None:
    # the session's next PATCH takes the file's flock as soon as this one ends; the
    # flush opens its own descriptor, so a slow one must not keep the lock
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=True)
    upload_id = new_upload(storage)
    flushes.hold.clear()
    try:
        with storage.append_upload(upload_id) as writer:
            writer.write(b"z" * (FLUSH_EVERY + MiB))
        assert flushes.started.wait(30)
        other = os.open(storage._upload_file(upload_id), os.O_RDONLY)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if held
        finally:
            os.close(other)
        with storage.append_upload(upload_id) as writer:  # the next PATCH goes on
            writer.write(b"z")
    finally:
        flushes.hold.set()
    assert flushes.done.acquire(timeout=30)
    assert os.path.getsize(storage._upload_file(upload_id)) == FLUSH_EVERY + MiB + 1


def test_an_upload_cancelled_under_its_flush_is_gone_and_harmless(tmp_path: Path,
                                                                  flushes) -> None:
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=True)
    upload_id = new_upload(storage)
    flushes.hold.clear()
    with storage.append_upload(upload_id) as writer:
        writer.write(b"c" * (FLUSH_EVERY + 1))
    assert flushes.started.wait(30)
    storage.delete_upload(upload_id)  # DELETE of the session while the disk works
    flushes.hold.set()
    assert flushes.done.acquire(timeout=30)
    assert not os.path.exists(storage._upload_file(upload_id))
    assert os.listdir(tmp_path / "root" / "uploads") == []


def test_a_flush_of_a_file_already_gone_does_nothing() -> None:
    flush_ahead._flush("/nonexistent/upload")  # finished or cancelled before it ran


@pytest.mark.parametrize("settings", [
    {"fsync": False},  # nothing is flushed at all
    {"fsync": True, "flush_ahead": False},
])
def test_no_flushes_ahead_when_turned_off(tmp_path: Path, flushes, settings) -> None:
    storage = FilesystemStorage(str(tmp_path / "root"), **settings)
    upload_id = new_upload(storage)
    with storage.append_upload(upload_id) as writer:
        writer.write(b"n" * (3 * FLUSH_EVERY))
        assert writer._ahead is None
    assert flushes.seen == []


def test_direct_writes_need_no_flush_ahead(tmp_path: Path, flushes) -> None:
    # around the cache the bytes go to the device as written; the flush comes at the end
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=True, direct_writes=True)
    upload_id = new_upload(storage)
    with storage.append_upload(upload_id) as writer:
        writer.write(b"d" * (3 * FLUSH_EVERY))
        assert writer._ahead is None
    assert flushes.seen == []


def failing_flush(monkeypatch) -> threading.Event:
    """The flushes ahead fail as a disk's writeback error would (EIO); set once one did."""
    failed = threading.Event()

    def eio(fd: int) -> None:
        failed.set()
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(flush_ahead.os, "fdatasync", eio)
    return failed


def test_a_failed_flush_discards_the_upload(tmp_path: Path, monkeypatch, caplog) -> None:
    # the flush has seen the writeback error: a descriptor opened later (the next PATCH,
    # the PUT) would not be told, so the bytes must not be published from this upload
    failed = failing_flush(monkeypatch)
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=True)
    upload_id = new_upload(storage)
    with storage.append_upload(upload_id) as writer:
        writer.write(b"e" * (FLUSH_EVERY + 1))
    assert failed.wait(30)
    deadline = time.monotonic() + 30
    while storage.upload_size(upload_id) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(FileNotFoundError), storage.append_upload(upload_id):
        pass
    assert any("discarded" in r.getMessage() and upload_id in r.getMessage()
               for r in caplog.records)


def test_the_pushed_blob_is_not_published_after_a_failed_flush(tmp_path: Path,
                                                                monkeypatch) -> None:
    # through the upload service: the PATCH's bytes went through a failed flush, and the
    # PUT that would publish them answers BLOB_UPLOAD_UNKNOWN (the client pushes again)
    MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}").create_schema()
    db = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    storage = FilesystemStorage(str(tmp_path / "storage"), fsync=True)
    uploads = UploadService(db, storage, 0)
    try:
        failed = failing_flush(monkeypatch)
        data = os.urandom(FLUSH_EVERY + MiB)
        state = uploads.start("flush/failed")
        uploads.append("flush/failed", state.id, [data[i:i + MiB]
                                                  for i in range(0, len(data), MiB)])
        assert failed.wait(30)
        deadline = time.monotonic() + 30
        while storage.upload_size(state.id) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with pytest.raises(BlobUploadUnknown):
            uploads.finish("flush/failed", state.id, digest, [])
        assert not storage.blob_exists(digest)
        assert db.repository_blob_size("flush/failed", digest) is None
    finally:
        db.dispose()
