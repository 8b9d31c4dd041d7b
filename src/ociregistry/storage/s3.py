"""Blobs in an S3-compatible object store (AWS S3, Ceph RGW, SeaweedFS, MinIO).

Keys under the configured prefix:
  blobs/<alg>/<xx>/<hex>        a blob, written only after its digest was checked
  uploads/<id>/data             the multipart upload of a session (then copied)
  uploads/<id>/tail-<a>-<b>     bytes a..b of a session not yet a whole part

Chunks go to the store as they arrive, as multipart parts of ``part_size``;
what is left over at the end of a request (S3 wants parts of 5 MiB or more) is
saved as a tail object, read back by whichever instance gets the next chunk.
The session's record (parts, ETags, tail) lives in the metadata row, which is
the only thing that says how far an upload got, so that any instance can go on.
A blob of less than one part never becomes a multipart upload: it is written
straight to its key from memory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from ociregistry.config import S3Settings
from ociregistry.storage.base import BlobStorage, StoredBlob, UploadWriter

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}
# Parts of one upload being sent at once, beside the one filling up: memory per
# upload being written is (PARTS_IN_FLIGHT + 1) * part_size.
PARTS_IN_FLIGHT = 2
# Server-side copies up to this size are one CopyObject (S3 allows 5 GiB).
_COPY_PART_THRESHOLD = 5 << 30


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


@contextmanager
def _not_found(what: str) -> Iterator[None]:
    """A key or multipart upload gone from the store (a lifecycle rule, a hand)
    as FileNotFoundError: the client is told the upload or blob is unknown, and
    can start again, instead of getting a server error every time."""
    try:
        yield
    except ClientError as exc:
        if _missing(exc):
            raise FileNotFoundError(what) from exc
        raise


class S3UploadWriter(UploadWriter):
    def __init__(
        self, storage: S3Storage, upload_id: str, state: dict[str, Any] | None
    ) -> None:
        self._s3 = storage
        self._id = upload_id
        self._data_key = storage._key(f"uploads/{upload_id}/data")
        saved = state or {}
        self._saved = saved
        self.mpu: str | None = saved.get("mpu")
        self.parts: list[list[Any]] = [list(p) for p in saved.get("parts", [])]
        self._parts_bytes = sum(p[2] for p in self.parts)
        self.buf = bytearray()
        tail = saved.get("tail")
        if tail:
            self.buf += storage._get_bytes(tail)
        self.offset = self._parts_bytes + len(self.buf)
        self._staged_key: str | None = None
        self._finished = False
        self._garbage: list[str] = []
        self._pending: list[tuple[int, int, Future[str]]] = []

    # -- appending --------------------------------------------------------
    def write(self, data: bytes | memoryview) -> None:
        self.buf += data
        self.offset += len(data)
        while len(self.buf) >= (size := self._part_size()):
            self._upload_part(bytes(memoryview(self.buf)[:size]))
            del self.buf[:size]

    def _part_size(self) -> int:
        # S3 allows 10,000 parts: each thousand parts, the parts grow by
        # part_size (8 MiB parts: 440 GiB before the limit, not 78).
        return self._s3.part_size * (1 + (len(self.parts) + len(self._pending)) // 1000)

    def _upload_part(self, data: bytes) -> None:
        """Send a part in the background while the next one fills (at most
        PARTS_IN_FLIGHT at a time: the store takes parallel parts much faster)."""
        if self.before_part is not None:
            self.before_part()
        if self.mpu is None:
            created = self._s3.client.create_multipart_upload(
                Bucket=self._s3.bucket, Key=self._data_key, **self._s3.sse_args
            )
            self.mpu = created["UploadId"]
        while len(self._pending) >= PARTS_IN_FLIGHT:
            self._wait_oldest()
        number = len(self.parts) + len(self._pending) + 1
        future = self._s3.pool.submit(self._send_part, self.mpu, number, data)
        self._pending.append((number, len(data), future))
        self._parts_bytes += len(data)

    def _send_part(self, mpu: str, number: int, data: bytes) -> str:
        answer = self._s3.client.upload_part(
            Bucket=self._s3.bucket, Key=self._data_key, UploadId=mpu,
            PartNumber=number, Body=data,
        )
        return answer["ETag"]

    def _wait_oldest(self) -> None:
        number, size, future = self._pending.pop(0)
        try:
            with _not_found(self._data_key):
                self.parts.append([number, future.result(), size])
        except BaseException:
            self._drain(quiet=True)  # nothing may still be writing when we fail
            raise

    def _drain(self, quiet: bool = False) -> None:
        while self._pending:
            if not quiet:
                self._wait_oldest()
                continue
            _, _, future = self._pending.pop(0)
            try:
                future.result()
            except BaseException:  # noqa: BLE001 - already failing: the first error wins
                pass

    def rollback(self, offset: int) -> None:
        # Only back to where this writer started: parts sent since are left out
        # of the state, and the next writer reuses their part numbers.
        self._drain(quiet=True)
        saved = self._saved
        if self.mpu and not saved.get("mpu"):
            self._s3._abort(self._data_key, self.mpu)  # this writer's own: nobody has it
        self.mpu = saved.get("mpu")
        self.parts = [list(p) for p in saved.get("parts", [])]
        self._parts_bytes = sum(p[2] for p in self.parts)
        tail = saved.get("tail")
        self.buf = bytearray(self._s3._get_bytes(tail)) if tail else bytearray()
        if offset != self._parts_bytes + len(self.buf):
            raise ValueError(f"an S3 upload can only roll back to {self.offset}")
        self.offset = offset

    def save(self) -> dict[str, Any]:
        self._drain()
        old_tail = self._saved.get("tail")
        tail = None
        if self.buf:
            tail = self._s3._key(f"uploads/{self._id}/tail-{self._parts_bytes}-{self.offset}")
            if tail != old_tail:
                self._s3._put(tail, bytes(self.buf))
        if old_tail and old_tail != tail:
            self._garbage.append(old_tail)
        return {"mpu": self.mpu, "parts": self.parts, "tail": tail}

    def read_back(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        if not (self.parts or self._pending):
            yield bytes(self.buf)
            return
        self._assemble()
        yield from self._s3._stream(self._data_key, chunk_size)

    # -- finishing --------------------------------------------------------
    def _assemble(self) -> None:
        """Complete the multipart upload into uploads/<id>/data (idempotent)."""
        if self._staged_key is not None:
            return
        if self.buf:
            self._upload_part(bytes(self.buf))
            self.buf = bytearray()
        self._drain()
        with _not_found(self._data_key):
            self._s3.client.complete_multipart_upload(
                Bucket=self._s3.bucket, Key=self._data_key, UploadId=self.mpu,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                           for n, e, _ in self.parts]},
            )
        self._staged_key = self._data_key

    def stage(self, digest: str) -> None:
        # Written to the blob's own key before the transaction: the key is
        # content addressed and nothing reads it without the index row, so a
        # copy of the same bytes does no harm if this push loses a race.
        if self.parts or self._pending:  # some parts may still be on their way
            self._assemble()
            if self._s3.blob_exists(digest):
                return  # a layer pushed before: no copy
        self._place(digest)

    def _place(self, digest: str) -> None:
        target = self._s3._blob_key(digest)
        if self._staged_key is None:
            self._s3._put(target, bytes(self.buf))
        else:
            self._s3._copy(self._staged_key, target)

    def commit(self, digest: str) -> None:
        self._finished = True
        # A GC may have removed an unreferenced copy of this blob between
        # stage() and the lock we now hold: put it back.
        size = self._s3.blob_size(digest)
        if size is None:
            self._place(digest)
            size = self._s3.blob_size(digest)
        if size != self.offset:  # never publish an object that isn't what was hashed
            self._s3.delete_blob(digest)
            raise OSError(f"stored {digest} has {size} bytes, {self.offset} were uploaded")

    def cleanup(self) -> None:
        keys = list(self._garbage)
        if self._staged_key is not None:
            keys.append(self._staged_key)
        if self._finished and self._saved.get("tail"):
            keys.append(self._saved["tail"])
        self._s3._delete_keys(keys)
        self._garbage = []


class S3Storage(BlobStorage):
    tracks_uploads = True

    def __init__(self, settings: S3Settings) -> None:
        if not settings.bucket:
            raise ValueError("storage.s3.bucket is required for the s3 driver")
        self.settings = settings
        self.bucket = settings.bucket
        prefix = settings.prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.part_size = settings.part_size
        self.sse_args: dict[str, str] = {}
        if settings.sse:
            self.sse_args["ServerSideEncryption"] = settings.sse
            if settings.sse_kms_key_id:
                self.sse_args["SSEKMSKeyId"] = settings.sse_kms_key_id
        # boto3 clients must not cross fork(): one per process, made on first use.
        self._clients: dict[tuple[int, str], Any] = {}
        self._pool: tuple[int, ThreadPoolExecutor] | None = None
        self._lock = threading.Lock()

    # -- clients ----------------------------------------------------------
    def _make_client(self, endpoint: str, probe: bool = False) -> Any:
        s = self.settings
        config = Config(
            s3={"addressing_style": "path" if s.path_style else "auto"},
            signature_version="s3v4",
            # A store that is down fails the request in seconds (503 to the client),
            # never hangs it; the readiness probe tries once, quickly.
            retries={"max_attempts": 1 if probe else s.max_attempts, "mode": "standard"},
            connect_timeout=min(s.connect_timeout_seconds, 2) if probe
            else s.connect_timeout_seconds,
            read_timeout=min(s.read_timeout_seconds, 5) if probe else s.read_timeout_seconds,
            max_pool_connections=32,
            # Checksums only where S3 requires them: not every S3-compatible
            # server knows the newer trailing-checksum protocol.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(
            aws_access_key_id=s.access_key or None,
            aws_secret_access_key=s.secret_key or None,
            region_name=s.region or None,
        )
        verify: bool | str | None = None  # None: the standard chain (AWS_CA_BUNDLE, certifi)
        if endpoint.startswith("http://"):
            verify = False  # no TLS: nothing to verify, and no CA variable to trip on
        elif s.ca_bundle:
            verify = s.ca_bundle
        elif not s.verify_tls:
            verify = False
        elif any(v in os.environ and not os.environ[v].strip()
                 for v in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE")):
            verify = True  # a blank variable means "unset", not "no CA at all"
        region = None if session.region_name else "us-east-1"
        return session.client(
            "s3", endpoint_url=endpoint or None, config=config, verify=verify, region_name=region
        )

    def _client_for(self, endpoint: str) -> Any:
        key = (os.getpid(), endpoint)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = self._make_client(endpoint)
                    self._clients = {k: v for k, v in self._clients.items()
                                     if k[0] == key[0]}
                    self._clients[key] = client
        return client

    @property
    def client(self) -> Any:
        return self._client_for(self.settings.endpoint_url)

    @property
    def pool(self) -> ThreadPoolExecutor:
        """This process's part senders (threads don't survive fork either)."""
        pid = os.getpid()
        if self._pool is None or self._pool[0] != pid:
            with self._lock:
                if self._pool is None or self._pool[0] != pid:
                    self._pool = (pid, ThreadPoolExecutor(16, thread_name_prefix="s3-part"))
        return self._pool[1]

    # -- keys and small helpers -------------------------------------------
    def _key(self, relative: str) -> str:
        return self.prefix + relative

    def _blob_key(self, digest: str) -> str:
        algorithm, encoded = digest.split(":", 1)
        return self._key(f"blobs/{algorithm}/{encoded[:2]}/{encoded}")

    def _abort(self, key: str, mpu: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=mpu)
        except ClientError as exc:
            if not _missing(exc):
                raise

    def _put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **self.sse_args)

    def _get_bytes(self, key: str) -> bytes:
        with _not_found(key):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def _copy(self, source: str, target: str) -> None:
        self.client.copy(
            {"Bucket": self.bucket, "Key": source}, self.bucket, target,
            ExtraArgs=dict(self.sse_args) or None,
            Config=TransferConfig(multipart_threshold=_COPY_PART_THRESHOLD,
                                  multipart_chunksize=1 << 30),
        )

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            if batch:
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )

    def _stream(
        self, key: str, chunk_size: int, byte_range: str | None = None
    ) -> Iterator[bytes]:
        args = {"Bucket": self.bucket, "Key": key}
        if byte_range:
            args["Range"] = byte_range
        with _not_found(key):
            body = self.client.get_object(**args)["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_size)
            finally:
                body.close()

        return chunks()

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            yield from page.get("Contents", [])

    # -- uploads ----------------------------------------------------------
    def create_upload(self, upload_id: str) -> None:
        return None  # nothing is stored before the first bytes

    def upload_size(self, upload_id: str) -> int | None:
        return None  # only the session's row knows

    @contextmanager
    def append_upload(
        self, upload_id: str, state: dict[str, Any] | None = None
    ) -> Iterator[UploadWriter]:
        writer = S3UploadWriter(self, upload_id, state)
        try:
            yield writer
        finally:
            writer._drain(quiet=True)  # no part may outlive the request

    def delete_upload(self, upload_id: str, state: dict[str, Any] | None = None) -> None:
        data_key = self._key(f"uploads/{upload_id}/data")
        mpus = {state["mpu"]} if state and state.get("mpu") else set()
        # Also any the state doesn't name (a writer that died before saving).
        found = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=data_key)
        mpus |= {u["UploadId"] for u in found.get("Uploads", []) if u["Key"] == data_key}
        for mpu in mpus:
            self._abort(data_key, mpu)
        self._delete_keys([o["Key"] for o in self._list(self._key(f"uploads/{upload_id}/"))])

    def list_uploads(self) -> Iterator[tuple[str, float]]:
        """Uploads with anything in the bucket: open multipart uploads and objects."""
        root = self._key("uploads/")
        seen: dict[str, float] = {}
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=root
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                upload_id = upload["Key"][len(root):].split("/", 1)[0]
                modified = upload["Initiated"].timestamp()
                seen[upload_id] = max(seen.get(upload_id, 0.0), modified)
        for obj in self._list(root):
            upload_id = obj["Key"][len(root):].split("/", 1)[0]
            seen[upload_id] = max(seen.get(upload_id, 0.0), obj["LastModified"].timestamp())
        yield from seen.items()

    # -- blobs ------------------------------------------------------------
    def blob_size(self, digest: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._blob_key(digest))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    def blob_exists(self, digest: str) -> bool:
        return self.blob_size(digest) is not None

    def blob_path(self, digest: str) -> str | None:
        return None

    def blob_url(self, digest: str) -> str | None:
        s = self.settings
        if not s.redirect:
            return None
        client = self._client_for(s.redirect_endpoint_url or s.endpoint_url)
        return client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._blob_key(digest)},
            ExpiresIn=s.redirect_expiry_seconds,
        )

    def open_blob(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        return self._stream(self._blob_key(digest), chunk_size)

    def read_blob_range(
        self, digest: str, start: int, length: int, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        return self._stream(
            self._blob_key(digest), chunk_size, f"bytes={start}-{start + length - 1}"
        )

    def delete_blob(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._blob_key(digest))

    def iter_blobs(self) -> Iterator[StoredBlob]:
        root = self._key("blobs/")
        for obj in self._list(root):
            parts = obj["Key"][len(root):].split("/")
            if len(parts) == 3:
                yield StoredBlob(
                    f"{parts[0]}:{parts[2]}", obj["Size"], obj["LastModified"].timestamp()
                )

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise OSError(f"S3 bucket {self.bucket!r} is not usable: {exc}") from exc

    def probe_write(self) -> None:
        from ociregistry.storage.s3_probe import probe_write

        key = (os.getpid(), "readiness-probe")  # one quick, non-retrying client per process
        client = self._clients.get(key)
        if client is None:
            client = self._make_client(self.settings.endpoint_url, probe=True)
            with self._lock:
                self._clients = {**self._clients, key: client}
        probe_write(client, self.bucket, self._key, self.sse_args, self.settings.sse)
