"""Upload sessions over a real SQLite file: hashing, continuation, rollback."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ociregistry.core.errors import (
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    SizeInvalid,
    Unsupported,
)
from ociregistry.core.uploads import UploadService, parse_content_range
from ociregistry.metadata import schema
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.filesystem import FilesystemStorage

REPO = "team/app"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Node:
    """One process's view: its own engine and service over the shared files."""

    def __init__(self, root: Path, max_blob_size: int = 0) -> None:
        self.db = MetadataStore(f"sqlite:///{root / 'registry.db'}")
        self.storage = FilesystemStorage(str(root), fsync=False)
        self.uploads = UploadService(self.db, self.storage, max_blob_size)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}").create_schema()
    return tmp_path


@pytest.fixture
def node(root: Path) -> Iterator[Node]:
    n = Node(root)
    yield n
    n.db.dispose()


@pytest.fixture
def other(root: Path) -> Iterator[Node]:
    """A second UploadService over the same database and storage: another worker process."""
    n = Node(root)
    yield n
    n.db.dispose()


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def blob_bytes(n: Node, digest: str) -> bytes:
    return b"".join(n.storage.open_blob(digest))


def test_chunked_upload_in_one_process_never_rehashes(node):
    data = os.urandom(300_000)
    state = node.uploads.start(REPO)
    assert state.offset == 0
    offset = 0
    for chunk in chunks_of(data, 64_000):
        state = node.uploads.append(REPO, state.id, chunks_of(chunk, 10_000), start=offset)
        offset += len(chunk)
        assert state.offset == offset
        assert node.uploads.status(REPO, state.id).offset == offset
    digest, size = node.uploads.finish(REPO, state.id, sha256(data), [])
    assert (digest, size) == (sha256(data), len(data))
    assert node.uploads.rehashes == 0
    assert blob_bytes(node, digest) == data
    assert node.db.repository_blob_size(REPO, digest) == len(data)


def test_last_chunk_with_the_put(node):
    data = os.urandom(5000)
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [data[:3000]])
    digest, size = node.uploads.finish(REPO, state.id, sha256(data), [data[3000:]], start=3000)
    assert size == 5000
    assert node.uploads.rehashes == 0
    assert blob_bytes(node, digest) == data


def test_another_process_continues_from_the_saved_hash_without_rereading(node, other):
    data = os.urandom(200_000)
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [data[:50_000]])
    # the next chunks reach another worker process: it resumes the saved hash state
    other.uploads.append(REPO, state.id, [data[50_000:120_000]], start=50_000)
    other.uploads.append(REPO, state.id, [data[120_000:150_000]], start=120_000)
    digest, size = other.uploads.finish(REPO, state.id, sha256(data), [data[150_000:]])
    assert (digest, size) == (sha256(data), len(data))
    assert other.uploads.rehashes == 0
    assert node.uploads.rehashes == 0
    assert blob_bytes(other, digest) == data


def test_without_a_resumable_hash_state_the_bytes_are_rehashed_once(node, other):
    """A session saved by a platform whose hash state can't be resumed here."""
    data = os.urandom(200_000)
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [data[:50_000]])
    with node.db.write() as conn:
        conn.execute(sa.update(schema.uploads).values(hash_state=b"oshs1sha256:garbage"))
    other.uploads.append(REPO, state.id, [data[50_000:120_000]], start=50_000)
    assert other.uploads.rehashes == 1
    other.uploads.append(REPO, state.id, [data[120_000:]], start=120_000)
    digest, _ = other.uploads.finish(REPO, state.id, sha256(data), [])
    assert digest == sha256(data)
    assert other.uploads.rehashes == 1  # from then on the state is saved again


def test_coming_back_to_the_first_process_uses_the_current_bytes(node, other):
    """A process whose cached hash is stale (others appended since) must not use it."""
    data = os.urandom(90_000)
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [data[:30_000]])
    other.uploads.append(REPO, state.id, [data[30_000:60_000]])
    node.uploads.append(REPO, state.id, [data[60_000:]])
    digest, _ = node.uploads.finish(REPO, state.id, sha256(data), [])
    assert digest == sha256(data)
    assert node.uploads.rehashes == 0


def test_finish_by_another_process_without_a_chunk(node, other):
    data = os.urandom(10_000)
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [data])
    digest, _ = other.uploads.finish(REPO, state.id, sha256(data), [])
    assert digest == sha256(data)
    assert other.uploads.rehashes == 0


def test_sessions_survive_a_new_service_instance(root, node):
    """A restart: a brand-new process finds the session and its offset."""
    data = os.urandom(4096)
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [data[:1000]])
    node.db.dispose()
    restarted = Node(root)
    assert restarted.uploads.status(REPO, state.id).offset == 1000
    digest, _ = restarted.uploads.finish(REPO, state.id, sha256(data), [data[1000:]])
    assert digest == sha256(data)


class Disconnect(OSError):
    pass


def truncated(data: bytes, after: int) -> Iterator[bytes]:
    """A body whose client goes away after ``after`` bytes."""
    yield data[:after]
    raise Disconnect("client went away")


def test_truncated_chunk_rolls_back_and_the_upload_continues(node):
    data = os.urandom(100_000)
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [data[:40_000]])
    with pytest.raises(Disconnect):
        node.uploads.append(REPO, state.id, truncated(data[40_000:], 25_000), start=40_000)
    # nothing of the failed chunk is kept
    assert node.uploads.status(REPO, state.id).offset == 40_000
    assert node.storage.upload_size(state.id) == 40_000
    # the client retries the chunk from the reported offset
    node.uploads.append(REPO, state.id, [data[40_000:]], start=40_000)
    digest, _ = node.uploads.finish(REPO, state.id, sha256(data), [])
    assert digest == sha256(data)
    assert blob_bytes(node, digest) == data
    # the same process kept its running hash: it never re-read the upload
    assert node.uploads.rehashes == 0


def test_truncated_first_chunk(node):
    data = os.urandom(10_000)
    state = node.uploads.start(REPO)
    with pytest.raises(Disconnect):
        node.uploads.append(REPO, state.id, truncated(data, 5_000))
    assert node.uploads.status(REPO, state.id).offset == 0
    digest, _ = node.uploads.finish(REPO, state.id, sha256(data), [data], start=0)
    assert digest == sha256(data)
    assert node.uploads.rehashes == 0


def test_truncated_last_chunk_on_put_publishes_nothing(node):
    data = os.urandom(10_000)
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [data[:4000]])
    with pytest.raises(Disconnect):
        node.uploads.finish(REPO, state.id, sha256(data), truncated(data[4000:], 100))
    assert not node.storage.blob_exists(sha256(data))
    assert node.db.repository_blob_size(REPO, sha256(data)) is None
    assert node.uploads.status(REPO, state.id).offset == 4000
    digest, _ = node.uploads.finish(REPO, state.id, sha256(data), [data[4000:]])
    assert digest == sha256(data)


def test_out_of_order_chunk_is_range_invalid_and_changes_nothing(node):
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [b"x" * 100])
    for start in (0, 50, 101, 1000):
        with pytest.raises(RangeInvalid) as info:
            node.uploads.append(REPO, state.id, [b"y" * 10], start=start)
        assert info.value.status == 416
    assert node.uploads.status(REPO, state.id).offset == 100


def test_digest_mismatch_stores_nothing(node):
    data = b"actual bytes"
    state = node.uploads.start(REPO)
    wrong = sha256(b"other bytes")
    with pytest.raises(DigestInvalid):
        node.uploads.finish(REPO, state.id, wrong, [data])
    assert not node.storage.blob_exists(wrong)
    assert not node.storage.blob_exists(sha256(data))
    assert node.db.repository_blob_size(REPO, wrong) is None
    with pytest.raises(BlobUploadUnknown):
        node.uploads.status(REPO, state.id)


def test_invalid_digest_on_finish(node):
    state = node.uploads.start(REPO)
    with pytest.raises(DigestInvalid):
        node.uploads.finish(REPO, state.id, "sha256:nothex", [b"x"])


def test_sha512_upload_and_sha512_digest_of_a_sha256_session(node):
    data = os.urandom(3000)
    want = "sha512:" + hashlib.sha512(data).hexdigest()
    state = node.uploads.start(REPO, "sha512")
    node.uploads.append(REPO, state.id, [data[:1000]])
    assert node.uploads.finish(REPO, state.id, want, [data[1000:]])[0] == want
    # a session started for sha256 may still be finished with a sha512 digest
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [data])
    assert node.uploads.finish(REPO, state.id, want, [])[0] == want


def test_unsupported_algorithm(node):
    with pytest.raises(Unsupported):
        node.uploads.start(REPO, "md5")


def test_sessions_belong_to_their_repository(node):
    state = node.uploads.start(REPO)
    with pytest.raises(BlobUploadUnknown):
        node.uploads.status("team/other", state.id)
    with pytest.raises(BlobUploadUnknown):
        node.uploads.append("team/other", state.id, [b"x"])


def test_cancel(node):
    state = node.uploads.start(REPO)
    node.uploads.append(REPO, state.id, [b"abc"])
    node.uploads.cancel(REPO, state.id)
    with pytest.raises(BlobUploadUnknown):
        node.uploads.status(REPO, state.id)
    assert node.storage.upload_size(state.id) is None
    with pytest.raises(BlobUploadUnknown):
        node.uploads.append(REPO, state.id, [b"d"])


def test_max_blob_size_rolls_back(root):
    n = Node(root, max_blob_size=1000)
    state = n.uploads.start(REPO)
    n.uploads.append(REPO, state.id, [b"a" * 600])
    with pytest.raises(SizeInvalid) as info:
        n.uploads.append(REPO, state.id, [b"b" * 300, b"c" * 300])
    assert info.value.status == 413
    assert n.uploads.status(REPO, state.id).offset == 600
    n.db.dispose()


def test_monolithic_and_duplicate_uploads(node):
    data = os.urandom(2048)
    assert node.uploads.monolithic(REPO, sha256(data), [data]) == (sha256(data), 2048)
    # the same bytes again (another repository): the stored blob is reused
    assert node.uploads.monolithic("team/two", sha256(data), chunks_of(data, 100))[0] == sha256(
        data
    )
    assert blob_bytes(node, sha256(data)) == data
    assert list(node.storage.list_uploads()) == []
    with pytest.raises(DigestInvalid):
        node.uploads.monolithic(REPO, sha256(b"other"), [data])
    assert list(node.storage.list_uploads()) == []


def test_mount(node):
    data = b"mount me"
    node.uploads.monolithic(REPO, sha256(data), [data])
    assert node.uploads.mount("team/dest", sha256(data), REPO) == len(data)
    assert node.db.repository_blob_size("team/dest", sha256(data)) == len(data)
    assert node.uploads.mount("team/dest2", sha256(data), None) == len(data)
    # not in the source repository, or not anywhere: no mount
    assert node.uploads.mount("team/dest3", sha256(data), "team/nothing") is None
    assert node.uploads.mount("team/dest3", sha256(b"missing"), None) is None


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, None),
        ("", None),
        ("0-0", (0, 0)),
        ("0-1023", (0, 1023)),
        ("1024-2047", (1024, 2047)),
        ("bytes 0-99/100", (0, 99)),
        ("bytes 5-9/*", (5, 9)),
        (" 3-4 ", (3, 4)),
    ],
)
def test_parse_content_range(header, expected):
    assert parse_content_range(header) == expected


@pytest.mark.parametrize(
    "header",
    ["5", "-5", "5-", "a-b", "5-4", "0x1-0x2", "1-2-3", "bytes=0-5", "0 - 5", "+1-2", "1-\xb2",
     "\u0661-\u0662", "1" * 5000 + "-" + "1" * 5001],
    ids=lambda h: repr(h)[:30],
)
def test_bad_content_range_is_range_invalid(header):
    with pytest.raises(RangeInvalid) as info:
        parse_content_range(header)
    assert info.value.status == 416


def test_gc_lock_of_a_killed_gc_expires_and_is_renewed_while_running(tmp_path):
    import time as _time

    from ociregistry.core import gc as gcmod
    from ociregistry.metadata.store import MetadataStore
    from ociregistry.storage.filesystem import FilesystemStorage

    db = MetadataStore(f"sqlite:///{tmp_path / 'r.db'}")
    db.create_schema()
    collector = gcmod.GarbageCollector(db, FilesystemStorage(str(tmp_path / "s")), 0, 0)
    # A GC that died holding the lock: it blocks others only until the TTL runs out.
    # (A TTL of seconds: on a loaded machine with durable commits, 0.2 s ran out before
    # the second collector even asked.)
    assert db.try_lock("gc", "dead-process", ttl=3)
    try:
        collector.run()
        raise AssertionError("the lock of a live GC must be respected")
    except gcmod.GCAlreadyRunning:
        pass
    _time.sleep(3.2)
    assert collector.run().dry_run is False
    # While running, the holder's lock is pushed forward.
    report = collector._renewing("me", None)
    assert db.try_lock("gc", "me", ttl=0.01)
    old = gcmod.LOCK_RENEW_EVERY
    gcmod.LOCK_RENEW_EVERY = 0
    try:
        report("blobs", 1, 2)
    finally:
        gcmod.LOCK_RENEW_EVERY = old
    _time.sleep(0.05)
    assert not db.try_lock("gc", "someone-else", ttl=1)
