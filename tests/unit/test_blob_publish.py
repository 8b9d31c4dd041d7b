"""Filesystem storage with fsync on publishes a blob's name in stage(), before the
index transaction (a hard link, its directory flushed), so that no disk flush runs
while the database's write lock is held; commit() only drops the upload's name.
What must still hold: the bytes under the name are the pushed ones, a name removed
meanwhile (GC of unrecorded bytes) is put back, a copy already there is replaced,
and a push whose recording fails leaves no bytes under the blob's name."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from ociregistry.core.uploads import UploadService
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.filesystem import FilesystemStorage


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemStorage:
    return FilesystemStorage(str(tmp_path / "root"), fsync=True)


def upload(storage: FilesystemStorage, data: bytes) -> str:
    upload_id = str(uuid.uuid4())
    storage.create_upload(upload_id)
    with storage.append_upload(upload_id) as writer:
        writer.write(data)
    return upload_id


def stored(storage: FilesystemStorage, dig: str) -> bytes:
    return b"".join(storage.open_blob(dig))


def test_stage_publishes_the_name_and_commit_drops_the_uploads(storage):
    data = os.urandom(5000)
    upload_id = upload(storage, data)
    with storage.append_upload(upload_id) as writer:
        writer.stage(digest(data))
        assert writer.published_early
        assert stored(storage, digest(data)) == data  # named before the transaction
        assert storage.upload_size(upload_id) == len(data)  # and the upload still is
        writer.commit(digest(data))
    assert storage.upload_size(upload_id) is None
    assert stored(storage, digest(data)) == data


def test_a_name_removed_between_stage_and_commit_is_put_back(storage):
    """GC removes bytes no row records, under the digest's lock: it may do so between
    stage() and the transaction that records them; commit() (under that lock) restores."""
    data = os.urandom(5000)
    upload_id = upload(storage, data)
    with storage.append_upload(upload_id) as writer:
        writer.stage(digest(data))
        storage.delete_blob(digest(data))
        assert not storage.blob_exists(digest(data))
        writer.commit(digest(data))
    assert stored(storage, digest(data)) == data
    assert storage.upload_size(upload_id) is None


def test_a_copy_already_there_is_replaced_not_kept(storage):
    data = os.urandom(5000)
    first = upload(storage, b"corrupt")
    with storage.append_upload(first) as writer:  # a bad copy under the name
        writer.stage(digest(data))
        writer.commit(digest(data))
    assert stored(storage, digest(data)) == b"corrupt"
    upload_id = upload(storage, data)
    with storage.append_upload(upload_id) as writer:
        writer.stage(digest(data))
        assert not writer.published_early  # a file is there: commit() replaces it
        writer.commit(digest(data))
    assert stored(storage, digest(data)) == data


def test_without_fsync_nothing_is_published_before_commit(tmp_path):
    storage = FilesystemStorage(str(tmp_path / "root"), fsync=False)
    data = os.urandom(100)
    upload_id = upload(storage, data)
    with storage.append_upload(upload_id) as writer:
        writer.stage(digest(data))
        assert not storage.blob_exists(digest(data))
        writer.commit(digest(data))
    assert stored(storage, digest(data)) == data


def test_a_push_whose_recording_fails_leaves_no_bytes_under_the_name(tmp_path, monkeypatch):
    db = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    db.create_schema()
    storage = FilesystemStorage(str(tmp_path), fsync=True)
    service = UploadService(db, storage)
    data = os.urandom(5000)

    def fail(*_args, **_kwargs):
        raise RuntimeError("the index refused")  # a fault inside the transaction

    state = service.start("team/app")
    with monkeypatch.context() as m:
        m.setattr(db, "record_blob", fail)
        with pytest.raises(RuntimeError):
            service.finish("team/app", state.id, digest(data), [data])
    assert not storage.blob_exists(digest(data))
    assert db.repository_blob_size("team/app", digest(data)) is None
    # the session is still there: the same push goes through
    assert service.finish("team/app", state.id, digest(data), [])[1] == len(data)
    assert stored(storage, digest(data)) == data
    db.dispose()
