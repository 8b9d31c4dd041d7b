"""The S3 driver against a real SeaweedFS: multipart parts, tails, leases, GC.

Two UploadService objects over one database and one bucket stand for two
instances of a cluster; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ociregistry.config import S3Settings
from ociregistry.core import uploads as uploads_module
from ociregistry.core.errors import BlobUploadInvalid, BlobUploadUnknown, DigestInvalid
from ociregistry.core.gc import GarbageCollector
from ociregistry.core.uploads import UploadService
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.s3 import S3Storage
from tests.cluster.s3 import SeaweedFS

REPO = "team/app"
PART = 5 << 20  # S3's minimum part size keeps the tests quick


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Instance:
    """One registry instance's view: its own engine, driver and service."""

    def __init__(self, db_url: str, settings: S3Settings) -> None:
        self.db = MetadataStore(db_url)
        self.storage = S3Storage(settings)
        self.uploads = UploadService(self.db, self.storage)


@pytest.fixture
def settings(seaweedfs: SeaweedFS, s3_bucket: str) -> S3Settings:
    return S3Settings(
        bucket=s3_bucket, prefix="reg/", endpoint_url=seaweedfs.endpoint_url,
        access_key=seaweedfs.access_key, secret_key=seaweedfs.secret_key, part_size=PART,
    )


@pytest.fixture
def pair(tmp_path: Path, settings: S3Settings) -> Iterator[tuple[Instance, Instance]]:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    MetadataStore(url).create_schema()
    a, b = Instance(url, settings), Instance(url, settings)
    yield a, b
    a.db.dispose()
    b.db.dispose()


@pytest.fixture
def client(seaweedfs: SeaweedFS):  # noqa: ANN201 - a boto3 client
    return seaweedfs.client()


def keys(client, bucket: str, prefix: str = "reg/") -> list[str]:  # noqa: ANN001
    found = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in found)


def open_multipart(client, bucket: str) -> list[str]:  # noqa: ANN001
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def blob_key(digest: str) -> str:
    alg, hexa = digest.split(":")
    return f"reg/blobs/{alg}/{hexa[:2]}/{hexa}"


def test_chunks_on_two_instances_become_one_blob_without_rereading(pair, client, settings):
    a, b = pair
    data = os.urandom(2 * PART + 123_456)
    state = a.uploads.start(REPO)
    # below a part (a tail object), across a part boundary, then a big one elsewhere
    cuts = [0, 1_000_000, PART + 10, 2 * PART + 100_000, len(data)]
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:], strict=False)):
        node = (a, b)[i % 2]
        assert node.uploads.append(REPO, state.id, [data[lo:hi]], start=lo).offset == hi
        assert (b, a)[i % 2].uploads.status(REPO, state.id).offset == hi
    digest, size = a.uploads.finish(REPO, state.id, sha256(data), [])
    assert (digest, size) == (sha256(data), len(data))
    assert a.uploads.rehashes == b.uploads.rehashes == 0  # hash state resumed each time
    assert b"".join(b.storage.open_blob(digest)) == data
    # the upload left nothing behind: no tail, no staging object, no open multipart upload
    assert keys(client, settings.bucket) == [blob_key(digest)]
    assert open_multipart(client, settings.bucket) == []


def test_a_big_last_chunk_sent_with_the_put(pair, client, settings):
    """Parts still on their way when the PUT's body ends must all be in the blob."""
    a, b = pair
    data = os.urandom(3 * PART + 4321)
    state = a.uploads.start(REPO)
    a.uploads.append(REPO, state.id, [data[:1000]])
    digest, size = b.uploads.finish(REPO, state.id, sha256(data), [data[1000:]], start=1000)
    assert size == len(data)
    assert b"".join(a.storage.open_blob(digest)) == data
    assert keys(client, settings.bucket) == [blob_key(digest)]
    assert open_multipart(client, settings.bucket) == []


def test_monolithic_push_of_several_parts(pair):
    a, _ = pair
    data = os.urandom(2 * PART + 1)
    digest, _ = a.uploads.monolithic(REPO, sha256(data), [data[i:i + 65536]
                                                           for i in range(0, len(data), 65536)])
    assert b"".join(a.storage.open_blob(digest)) == data


def test_an_object_that_is_not_what_was_hashed_is_never_published(pair):
    a, _ = pair
    data = os.urandom(PART + 10)
    state = a.uploads.start(REPO)
    with a.storage.append_upload(state.id) as writer:
        writer.write(data)
        digest = sha256(data)
        writer.stage(digest)
        a.storage._put(a.storage._blob_key(digest), b"short")  # a store gone wrong
        with pytest.raises(OSError):
            writer.commit(digest)
    assert not a.storage.blob_exists(digest)


def test_a_small_blob_is_one_put_and_never_a_multipart_upload(pair, client, settings):
    a, _ = pair
    data = b'{"architecture":"amd64"}'
    digest, _ = a.uploads.monolithic(REPO, sha256(data), [data])
    assert keys(client, settings.bucket) == [blob_key(digest)]
    assert a.storage.blob_exists(digest)
    assert b"".join(a.storage.open_blob(digest)) == data


def test_an_empty_blob(pair):
    a, _ = pair
    digest, size = a.uploads.monolithic(REPO, sha256(b""), [])
    assert size == 0 and b"".join(a.storage.open_blob(digest)) == b""


class Gone(OSError):
    pass


def cut_off(data: bytes, after: int) -> Iterator[bytes]:
    yield data[:after]
    raise Gone("client went away")


def test_a_chunk_cut_off_after_sending_parts_loses_nothing(pair, client, settings):
    a, b = pair
    data = os.urandom(3 * PART)
    state = a.uploads.start(REPO)
    a.uploads.append(REPO, state.id, [data[:100]])
    with pytest.raises(Gone):  # two whole parts went out before the client vanished
        a.uploads.append(REPO, state.id, cut_off(data[100:], 2 * PART + 5), start=100)
    assert b.uploads.status(REPO, state.id).offset == 100
    b.uploads.append(REPO, state.id, [data[100:]], start=100)
    digest, _ = b.uploads.finish(REPO, state.id, sha256(data), [])
    assert b"".join(a.storage.open_blob(digest)) == data
    assert keys(client, settings.bucket) == [blob_key(digest)]
    assert open_multipart(client, settings.bucket) == []


def test_a_wrong_digest_publishes_nothing_and_cleans_up(pair, client, settings):
    a, _ = pair
    data = os.urandom(PART + 1)
    state = a.uploads.start(REPO)
    a.uploads.append(REPO, state.id, [data])
    with pytest.raises(DigestInvalid):
        a.uploads.finish(REPO, state.id, sha256(b"something else"), [])
    assert keys(client, settings.bucket) == []
    assert open_multipart(client, settings.bucket) == []
    assert a.db.repository_blob_size(REPO, sha256(data)) is None


def test_cancel_aborts_the_multipart_upload(pair, client, settings):
    a, _ = pair
    state = a.uploads.start(REPO)
    a.uploads.append(REPO, state.id, [os.urandom(PART + 300)])  # a part and a tail
    assert open_multipart(client, settings.bucket) and keys(client, settings.bucket)
    a.uploads.cancel(REPO, state.id)
    assert open_multipart(client, settings.bucket) == []
    assert keys(client, settings.bucket) == []


def test_gc_aborts_abandoned_multipart_uploads(pair, client, settings):
    a, _ = pair
    # a session that went quiet, and a multipart upload whose session row is gone
    # (an instance killed between creating it and saving the session)
    stale = a.uploads.start(REPO)
    a.uploads.append(REPO, stale.id, [os.urandom(PART + 10)])
    orphan_key = "reg/uploads/0b7e6a52-1111-4c44-9c1e-5d8e1f0a9b11/data"
    client.create_multipart_upload(Bucket=settings.bucket, Key=orphan_key)
    assert len(open_multipart(client, settings.bucket)) == 2
    gc = GarbageCollector(a.db, a.storage, grace_seconds=0, upload_ttl_seconds=0)
    result = gc.run()
    assert result.uploads_expired == 2
    assert open_multipart(client, settings.bucket) == []
    assert keys(client, settings.bucket) == []


def test_a_second_request_on_a_busy_session_is_refused_not_interleaved(
    pair, monkeypatch: pytest.MonkeyPatch
):
    a, b = pair
    monkeypatch.setattr(uploads_module, "LEASE_WAIT_SECONDS", 0.5)
    state = a.uploads.start(REPO)
    data = os.urandom(1000)
    refused: list[BaseException] = []

    def chunks() -> Iterator[bytes]:
        yield data[:500]
        # while this request holds the session, another instance gets a chunk
        try:
            b.uploads.append(REPO, state.id, [b"x" * 10])
        except BlobUploadInvalid as exc:
            refused.append(exc)
        yield data[500:]

    a.uploads.append(REPO, state.id, chunks())
    assert refused and refused[0].status == 409
    digest, _ = b.uploads.finish(REPO, state.id, sha256(data), [])
    assert b"".join(a.storage.open_blob(digest)) == data


def test_blob_get_redirects_to_a_presigned_url_that_serves_the_bytes(pair, settings):
    a, _ = pair
    data = os.urandom(70_000)
    digest, _ = a.uploads.monolithic(REPO, sha256(data), [data])
    url = a.storage.blob_url(digest)
    assert url and url.startswith(settings.endpoint_url) and "X-Amz-Signature" in url
    assert requests.get(url, timeout=30).content == data
    ranged = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data[100:200]
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert requests.get(tampered, timeout=30).status_code == 403


def test_without_redirects_bytes_stream_through_with_ranges(tmp_path, settings):
    plain = S3Storage(settings.model_copy(update={"redirect": False}))
    db = MetadataStore(f"sqlite:///{tmp_path / 'r.db'}")
    db.create_schema()
    data = os.urandom(300_000)
    digest, _ = UploadService(db, plain).monolithic(REPO, sha256(data), [data])
    assert plain.blob_url(digest) is None
    assert b"".join(plain.read_blob_range(digest, 1000, 5000)) == data[1000:6000]
    with pytest.raises(FileNotFoundError):
        plain.open_blob(sha256(b"never stored"))


def test_a_blob_removed_between_stage_and_commit_is_put_back(pair):
    """A GC sweeping an old unreferenced copy of the same digest mid-push."""
    a, _ = pair
    data = os.urandom(PART + 7)
    state = a.uploads.start(REPO)
    with a.storage.append_upload(state.id) as writer:
        writer.write(data)
        digest = sha256(data)
        writer.stage(digest)
        a.storage.delete_blob(digest)  # the sweep
        writer.commit(digest)
        writer.cleanup()
    assert b"".join(a.storage.open_blob(digest)) == data


def test_wrong_credentials_make_the_store_unready(settings):
    bad = S3Storage(settings.model_copy(update={"secret_key": "not-the-secret"}))
    with pytest.raises(OSError):
        bad.check()
    S3Storage(settings).check()


@pytest.mark.parametrize("bundle", ["", " ", "/nonexistent/ca.pem"])
def test_whatever_the_ca_variables_hold_a_plain_http_store_works(
    settings, monkeypatch: pytest.MonkeyPatch, bundle: str
):
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, bundle)
    S3Storage(settings).check()


def test_iter_blobs_lists_what_gc_and_check_walk(pair):
    a, _ = pair
    stored = {}
    for data in (b"one", b"two" * 100):
        digest, size = a.uploads.monolithic(REPO, sha256(data), [data])
        stored[digest] = size
    assert {b.digest: b.size for b in a.storage.iter_blobs()} == stored


def test_server_side_encryption_applies_to_every_object(tmp_path, settings, client):
    sse = S3Storage(settings.model_copy(update={"sse": "AES256"}))
    db = MetadataStore(f"sqlite:///{tmp_path / 'sse.db'}")
    db.create_schema()
    service = UploadService(db, sse)
    for data in (os.urandom(2 * PART + 5), b"a small config"):  # multipart + copy, one PUT
        state = service.start(REPO)
        service.append(REPO, state.id, [data[:100]])
        digest, _ = service.finish(REPO, state.id, sha256(data), [data[100:]])
        head = client.head_object(Bucket=settings.bucket, Key=blob_key(digest))
        assert head["ServerSideEncryption"] == "AES256"
        assert b"".join(sse.open_blob(digest)) == data


def test_a_multipart_upload_gone_from_the_store_makes_the_session_unknown(pair, client, settings):
    """A bucket lifecycle rule aborted it: the client is told to start again (404),
    not given a server error on every retry."""
    a, _ = pair
    state = a.uploads.start(REPO)
    first = os.urandom(PART + 10)
    a.uploads.append(REPO, state.id, [first])
    for upload in client.list_multipart_uploads(Bucket=settings.bucket)["Uploads"]:
        client.abort_multipart_upload(Bucket=settings.bucket, Key=upload["Key"],
                                      UploadId=upload["UploadId"])
    with pytest.raises(BlobUploadUnknown):
        a.uploads.append(REPO, state.id, [os.urandom(PART)], start=PART + 10)
    with pytest.raises(BlobUploadUnknown):  # the right digest: completing is what fails
        a.uploads.finish(REPO, state.id, sha256(first), [])
    assert not a.storage.blob_exists(sha256(first))
    # a new session works as ever
    data = os.urandom(PART + 1)
    digest, _ = a.uploads.monolithic(REPO, sha256(data), [data])
    assert b"".join(a.storage.open_blob(digest)) == data


def test_a_lost_tail_object_makes_the_session_unknown(pair, client, settings):
    a, _ = pair
    state = a.uploads.start(REPO)
    a.uploads.append(REPO, state.id, [b"under one part"])
    client.delete_objects(Bucket=settings.bucket, Delete={"Objects": [
        {"Key": k} for k in keys(client, settings.bucket)]})
    with pytest.raises(BlobUploadUnknown):
        a.uploads.append(REPO, state.id, [b" more"], start=14)


def test_parts_grow_every_thousand_so_big_blobs_fit_in_10000(settings):
    storage = S3Storage(settings)
    fake = [[n + 1, f'"etag{n}"', PART] for n in range(2500)]
    with storage.append_upload("a1b2c3d4-0000", {"mpu": "x", "parts": fake}) as writer:
        assert writer.offset == 2500 * PART
        assert writer._part_size() == 3 * PART  # parts 2001-3000
    with storage.append_upload("a1b2c3d4-0001", None) as writer:
        assert writer._part_size() == PART
