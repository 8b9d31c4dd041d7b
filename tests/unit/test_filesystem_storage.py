"""Filesystem blob storage: appends and rollback, atomic commit, listing."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from ociregistry.storage.filesystem import FilesystemStorage


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemStorage:
    return FilesystemStorage(str(tmp_path / "root"), fsync=True)


def new_upload(storage: FilesystemStorage, data: bytes = b"") -> str:
    upload_id = str(uuid.uuid4())
    storage.create_upload(upload_id)
    if data:
        with storage.append_upload(upload_id) as writer:
            writer.write(data)
    return upload_id


def commit(storage: FilesystemStorage, upload_id: str, dig: str) -> None:
    """What the upload service does once the digest is checked."""
    with storage.append_upload(upload_id) as writer:
        writer.stage(dig)
        writer.commit(dig)
        writer.cleanup()


def read_upload(storage: FilesystemStorage, upload_id: str, chunk_size: int = 1 << 20) -> bytes:
    with storage.append_upload(upload_id) as writer:
        return b"".join(writer.read_back(chunk_size))


def blob_file(storage: FilesystemStorage, dig: str) -> Path:
    algorithm, encoded = dig.split(":")
    return Path(storage.root) / "blobs" / algorithm / encoded[:2] / encoded


def test_layout_is_created(tmp_path):
    FilesystemStorage(str(tmp_path / "new" / "root"))
    assert (tmp_path / "new" / "root" / "blobs").is_dir()
    assert (tmp_path / "new" / "root" / "uploads").is_dir()


def test_appends_accumulate(storage):
    upload_id = new_upload(storage)
    assert storage.upload_size(upload_id) == 0
    with storage.append_upload(upload_id) as writer:
        assert writer.offset == 0
        writer.write(b"hello ")
        writer.write(memoryview(b"world"))
        assert writer.offset == 11
    with storage.append_upload(upload_id) as writer:
        assert writer.offset == 11  # a later writer starts where the file ends
        writer.write(b"!")
    assert storage.upload_size(upload_id) == 12
    assert read_upload(storage, upload_id, chunk_size=4) == b"hello world!"


def test_rollback_drops_a_partial_chunk(storage):
    upload_id = new_upload(storage, b"first chunk|")
    with storage.append_upload(upload_id) as writer:
        writer.write(b"half of the sec")
        writer.rollback(12)
        assert writer.offset == 12
        writer.write(b"second chunk")  # writing again continues at the rollback point
    assert read_upload(storage, upload_id) == b"first chunk|second chunk"
    with storage.append_upload(upload_id) as writer:
        writer.write(b"tail")
        writer.rollback(0)
    assert storage.upload_size(upload_id) == 0


def test_unknown_upload(storage):
    missing = str(uuid.uuid4())
    assert storage.upload_size(missing) is None
    with pytest.raises(FileNotFoundError):
        with storage.append_upload(missing):
            pass
    storage.delete_upload(missing)  # no error


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..", "a/b", "", "UPPER-CASE-ID", "x" * 100])
def test_upload_ids_cannot_escape_the_uploads_directory(storage, bad):
    with pytest.raises(ValueError):
        storage.create_upload(bad)
    with pytest.raises(ValueError):
        storage.upload_size(bad)


def test_commit_is_an_atomic_rename(storage):
    data = b"layer bytes" * 1000
    dig = digest(data)
    upload_id = new_upload(storage, data)
    upload_path = Path(storage.root) / "uploads" / upload_id
    inode = upload_path.stat().st_ino
    assert not storage.blob_exists(dig)
    commit(storage, upload_id, dig)
    target = blob_file(storage, dig)
    # the very same file moved into place: never a copy, never half-written
    assert target.stat().st_ino == inode
    assert not upload_path.exists()
    assert storage.upload_size(upload_id) is None
    assert storage.blob_exists(dig)
    assert storage.blob_path(dig) == str(target)
    assert b"".join(storage.open_blob(dig, chunk_size=7)) == data


def test_commit_of_an_existing_digest_replaces_a_corrupt_copy(storage):
    """The new bytes were just hashed; the stored file may have rotted (check --repair
    tells users to push again to restore a blob, and that must work)."""
    data = b"same content"
    dig = digest(data)
    commit(storage, new_upload(storage, data), dig)
    blob_file(storage, dig).write_bytes(b"rotten bytes")
    second = new_upload(storage, data)
    commit(storage, second, dig)
    assert storage.upload_size(second) is None  # the upload became the blob
    assert b"".join(storage.open_blob(dig)) == data
    assert [u for u, _ in storage.list_uploads()] == []


def test_delete_blob(storage):
    dig = digest(b"x")
    commit(storage, new_upload(storage, b"x"), dig)
    storage.delete_blob(dig)
    assert not storage.blob_exists(dig)
    storage.delete_blob(dig)  # idempotent


def test_iter_blobs_lists_every_blob_with_size_and_mtime(storage):
    contents = [b"a", b"bb" * 10, b"ccc" * 100]
    expected = {}
    for data in contents:
        dig = digest(data)
        commit(storage, new_upload(storage, data), dig)
        expected[dig] = len(data)
    sha512 = "sha512:" + hashlib.sha512(b"d").hexdigest()
    commit(storage, new_upload(storage, b"d"), sha512)
    expected[sha512] = 1
    found = list(storage.iter_blobs())
    assert {b.digest: b.size for b in found} == expected
    for blob in found:
        assert blob.modified == pytest.approx(os.stat(storage.blob_path(blob.digest)).st_mtime)


def test_iter_blobs_on_empty_storage(storage):
    assert list(storage.iter_blobs()) == []


def test_list_uploads(storage):
    a = new_upload(storage, b"1")
    b = new_upload(storage)
    (Path(storage.root) / "uploads" / "not-an-upload.tmp").write_text("x")
    listed = dict(storage.list_uploads())
    assert set(listed) == {a, b}
    storage.delete_upload(a)
    assert set(dict(storage.list_uploads())) == {b}


def test_check_fails_when_storage_is_unusable(storage):
    storage.check()
    uploads = Path(storage.root) / "uploads"
    uploads.rename(Path(storage.root) / "uploads.moved")
    uploads.write_text("a file where the upload directory should be")
    with pytest.raises(OSError):
        storage.check()
    blobs = Path(storage.root) / "blobs"
    blobs.rename(Path(storage.root) / "blobs.moved")
    with pytest.raises(OSError, match="missing"):
        storage.check()


def test_flush_behind_starts_writeback_and_rollback_keeps_the_bytes_right(storage, monkeypatch):
    from ociregistry.storage import filesystem

    # The page-cache path, taken where O_DIRECT is refused (test_direct_write.py has the other)
    monkeypatch.setattr(filesystem, "open_direct", lambda path, flags: None)
    if filesystem._SYNC_FILE_RANGE is None:
        pytest.skip("sync_file_range(2) is Linux-only")
    block = os.urandom(filesystem.FLUSH_BEHIND // 2)
    upload_id = new_upload(storage)
    with storage.append_upload(upload_id) as writer:
        for _ in range(3):
            writer.write(block)
        # Started once FLUSH_BEHIND was reached, not for the half written since.
        assert writer._flushed == filesystem.FLUSH_BEHIND
        writer.rollback(len(block))
        assert writer._flushed == len(block)
        writer.write(block[:10])
        writer.stage("sha256:unused")
    data = block + block[:10]
    with storage.append_upload(upload_id) as writer:
        assert b"".join(writer.read_back()) == data
        writer.commit(digest(data))
    assert Path(storage.blob_path(digest(data))).read_bytes() == data
