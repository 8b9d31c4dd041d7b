"""Upload sessions: offsets, streaming hashes, and atomic finalisation.

After each chunk the running hash is saved with the session's row
(core/hashstate.py), next to the storage driver's own record of the bytes, so
whichever process or instance gets the next chunk goes on from there without
re-reading anything. The process that wrote last also keeps the hash in memory.
Only when no state can be resumed (another platform) is the hash rebuilt from
the stored bytes.

Drivers that track uploads only through the row (S3) serialise the requests of
one session with a lease in the row; the filesystem driver locks the file.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ociregistry.core.digests import ALGORITHMS, parse_digest
from ociregistry.core.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    SizeInvalid,
    TooManyRequests,
    Unsupported,
)
from ociregistry.core.hashpipe import HashPipeline
from ociregistry.core.hashstate import ResumableHash, new_resumable
from ociregistry.lifecycle.quotas import refusals
from ociregistry.metadata.gc_queries import remove_unrecorded_bytes
from ociregistry.metadata.quota_accounting import QuotaExceeded
from ociregistry.metadata.store import MetadataStore, UploadRow
from ociregistry.storage.base import BlobStorage, UploadWriter

# How long a request holds a session unless it renews (before every part and
# every LEASE_SECONDS / 3 while bytes arrive); another request waits a little
# longer than that, so that a client resuming after its instance died gets the
# session once the dead holder's lease runs out.
log = logging.getLogger(__name__)

LEASE_SECONDS = 15.0
LEASE_WAIT_SECONDS = 20.0


@dataclass
class UploadState:
    id: str
    offset: int


class _HashCache:
    """Per-process running hashes, keyed by upload id, bounded (LRU)."""

    def __init__(self, capacity: int = 4096) -> None:
        self._items: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.capacity = capacity

    def take(self, upload_id: str) -> tuple[int, Any] | None:
        with self._lock:
            return self._items.pop(upload_id, None)

    def put(self, upload_id: str, offset: int, hasher: Any) -> None:
        with self._lock:
            self._items[upload_id] = (offset, hasher)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def drop(self, upload_id: str) -> None:
        with self._lock:
            self._items.pop(upload_id, None)


class UploadService:
    def __init__(
        self, metadata: MetadataStore, storage: BlobStorage, max_blob_size: int = 0
    ) -> None:
        self.db = metadata
        self.storage = storage
        self.max_blob_size = max_blob_size
        self.hashes = _HashCache()
        # How many times a hash had to be rebuilt from stored bytes (tests, metrics).
        self.rehashes = 0
        # Limits (0: none), set from settings.limits by the web layer.
        self.session_lifetime = 0.0  # seconds from a session's start
        self.max_sessions_per_owner = 0
        self.quotas: Any = None  # lifecycle.quotas.QuotaService, set by build_runtime

    def precheck(self, name: str, length: int | None, digest: str | None = None) -> None:
        """Refuse a body of ``length`` bytes that no quota of ``name`` has room for,
        before any of it is read (OCI DENIED). ``digest``: what the blob will be, when
        the request says so (a namespace holding it already has room)."""
        if self.quotas is not None:
            self.quotas.precheck(name, length, digest)

    # ``owner`` is who may use a session: None when authentication is off (no
    # check), else the user name ("" for anonymous). A session belongs to the
    # repository and the owner that opened it; anyone else is told it does not
    # exist.
    def start(
        self, name: str, algorithm: str = "sha256", owner: str | None = None
    ) -> UploadState:
        if algorithm not in ALGORITHMS:
            raise Unsupported(
                "unsupported digest algorithm", {"algorithm": algorithm}, status=400
            )
        upload_id = str(uuid.uuid4())
        self.storage.create_upload(upload_id)
        try:
            # Not synced: a session holds nothing yet (see progress_write).
            with self.db.progress_write() as conn:
                if owner is not None and self.max_sessions_per_owner:
                    if self.db.count_uploads(conn, owner) >= self.max_sessions_per_owner:
                        raise TooManyRequests(
                            "too many open upload sessions",
                            {"max": self.max_sessions_per_owner},
                            headers={"Retry-After": "60"},
                        )
                repo_id = self.db.ensure_repository(conn, name)
                self.db.create_upload(conn, upload_id, repo_id, algorithm, owner)
        except BaseException:
            self.storage.delete_upload(upload_id)
            raise
        return UploadState(upload_id, 0)

    def _session(self, name: str, upload_id: str, owner: str | None = None) -> UploadRow:
        row = self.db.get_upload(name, upload_id)
        if row is None or (
            not self.storage.tracks_uploads and self.storage.upload_size(upload_id) is None
        ):
            raise BlobUploadUnknown(detail={"upload": upload_id})
        if owner is not None and row.owner != owner:
            raise BlobUploadUnknown(detail={"upload": upload_id})
        if self.session_lifetime and time.time() - row.created_at > self.session_lifetime:
            self._discard(upload_id, row)
            raise BlobUploadUnknown(
                "upload session expired", {"upload": upload_id, "max_age": self.session_lifetime}
            )
        return row

    def status(self, name: str, upload_id: str, owner: str | None = None) -> UploadState:
        row = self._session(name, upload_id, owner)
        size = row.size if self.storage.tracks_uploads else self.storage.upload_size(upload_id)
        if size is None:
            raise BlobUploadUnknown(detail={"upload": upload_id})
        return UploadState(upload_id, size)

    @contextmanager
    def _writer(
        self, name: str, upload_id: str, owner: str | None
    ) -> Iterator[tuple[UploadRow, UploadWriter, str | None]]:
        """The session's row and a writer holding it exclusively (and the lease token)."""
        row = self._session(name, upload_id, owner)
        token = None
        if self.storage.tracks_uploads:
            token = str(uuid.uuid4())
            deadline = time.monotonic() + LEASE_WAIT_SECONDS
            while not self.db.take_upload_lease(upload_id, token, LEASE_SECONDS):
                if time.monotonic() > deadline:
                    raise BlobUploadInvalid(
                        "another request is appending to this upload",
                        {"upload": upload_id}, status=409, headers={"Retry-After": "5"},
                    )
                time.sleep(0.05)
            # The previous holder may have moved the session on (or ended it).
            fresh = self.db.get_upload(name, upload_id)
            if fresh is None:
                raise BlobUploadUnknown(detail={"upload": upload_id})
            row = fresh
        try:
            with self.storage.append_upload(upload_id, row.storage) as writer:
                if token is not None:
                    writer.before_part = lambda: self._renew(upload_id, token)
                yield row, writer, token
        except FileNotFoundError as exc:
            raise BlobUploadUnknown(detail={"upload": upload_id}) from exc
        finally:
            if token is not None:
                self.db.release_upload_lease(upload_id, token)

    def _renew(self, upload_id: str, token: str) -> None:
        if not self.db.take_upload_lease(upload_id, token, LEASE_SECONDS):
            raise BlobUploadInvalid(
                "the upload was taken over by another request", {"upload": upload_id},
                status=409,
            )

    def _hasher_at(self, row: UploadRow, writer: UploadWriter) -> Any:
        offset = writer.offset
        cached = self.hashes.take(row.id)
        if cached is not None and cached[0] == offset:
            return cached[1]
        if offset == 0:
            return new_resumable(row.algorithm)  # nothing received yet
        if row.size == offset:
            resumed = ResumableHash.from_state(row.algorithm, row.hash_state, offset)
            if resumed is not None:
                return resumed
        # No state this process can resume: rebuild the hash from the bytes.
        self.rehashes += 1
        hasher = new_resumable(row.algorithm)
        seen = 0
        for chunk in writer.read_back():
            take = chunk[: offset - seen]
            hasher.update(take)
            seen += len(take)
            if seen >= offset:
                break
        return hasher

    def _append(
        self, row: UploadRow, writer: UploadWriter, chunks: Iterable[bytes], start: int | None
    ) -> Any:
        if start is not None and start != writer.offset:
            raise RangeInvalid(
                "chunk out of order",
                {"expected_start": writer.offset, "start": start},
            )
        hasher = self._hasher_at(row, writer)
        base = writer.offset
        saved = hasher.copy()  # the hash at ``base``, kept if this chunk fails
        keep_alive = writer.before_part
        renewed = time.monotonic()
        # Received here, hashed on another core meanwhile (hashpipe.py); written here,
        # or by a third thread when the writer waits for the disk (write_behind).
        behind = writer.write_behind
        pipe = HashPipeline(hasher, writer.write_many if behind else None)
        offset = base
        try:
            for chunk in pipe.chunks(chunks):
                if keep_alive is not None and time.monotonic() - renewed > LEASE_SECONDS / 3:
                    keep_alive()
                    renewed = time.monotonic()
                if self.max_blob_size and offset + len(chunk) > self.max_blob_size:
                    raise SizeInvalid(
                        "blob exceeds the maximum size",
                        {"max": self.max_blob_size},
                        status=413,
                    )
                if not behind:
                    writer.write(chunk)
                pipe.add(chunk)
                offset += len(chunk)
            pipe.drain()
            writer.flush()  # a failure here rolls back like any other write
            return hasher
        except BaseException:
            # A failed or truncated chunk leaves the session where it was.
            pipe.abort()
            writer.rollback(base)
            self.hashes.put(row.id, base, saved)
            raise

    def append(
        self,
        name: str,
        upload_id: str,
        chunks: Iterable[bytes],
        start: int | None = None,
        owner: str | None = None,
    ) -> UploadState:
        with self._writer(name, upload_id, owner) as (row, writer, token):
            hasher = self._append(row, writer, chunks, start)
            offset = writer.offset
            state = writer.save()
            hash_state = hasher.state() if isinstance(hasher, ResumableHash) else None
            # Recorded while the session is still held: the next writer reads it.
            try:
                with refusals("upload"):
                    saved = self.db.save_upload(upload_id, offset, hash_state, state, token)
            except Exception as exc:
                if isinstance(exc.__cause__, QuotaExceeded):
                    # Over a quota: the session ends and gives its bytes back.
                    writer.cleanup()
                    self._discard(upload_id, row)
                raise
            if not saved:
                raise BlobUploadUnknown(detail={"upload": upload_id})
            writer.cleanup()
            self.hashes.put(upload_id, offset, hasher)
        return UploadState(upload_id, offset)

    def finish(
        self,
        name: str,
        upload_id: str,
        digest: str,
        chunks: Iterable[bytes],
        start: int | None = None,
        owner: str | None = None,
    ) -> tuple[str, int]:
        """Append the last chunk (if any), check the digest, and publish the blob."""
        algorithm, _ = parse_digest(digest)
        with self._writer(name, upload_id, owner) as (row, writer, _token):
            hasher = self._append(row, writer, chunks, start)
            size = writer.offset
            if algorithm != row.algorithm:
                self.rehashes += 1
                hasher = new_resumable(algorithm)
                for chunk in writer.read_back():
                    hasher.update(chunk)
            actual = f"{algorithm}:{hasher.hexdigest()}"
            if actual != digest:
                self._discard(upload_id, row)
                raise DigestInvalid(detail={"expected": digest, "actual": actual})
            writer.stage(digest)  # slow work (fsync, S3 copy) outside the transaction
            try:
                with refusals("upload"), self.db.write() as conn:
                    self.db.lock_digest(conn, digest)
                    # The session's bytes leave the usage before the blob's may enter
                    # it; a quota refusal comes before the bytes are published.
                    self.db.delete_upload(conn, upload_id)
                    self.db.record_blob(conn, row.repository_id, digest, size)
                    writer.commit(digest)
            except Exception as exc:
                if writer.published_early:
                    self._unpublish(digest)
                if isinstance(exc.__cause__, QuotaExceeded):
                    writer.cleanup()
                    self._discard(upload_id, row)
                raise
            writer.cleanup()
        self.hashes.drop(upload_id)
        return digest, size

    def _unpublish(self, digest: str) -> None:
        """The blob's bytes stage() put in place, when no row records the digest: the
        push failed (under the digest's lock, so another upload's recorded copy stays)."""
        try:
            remove_unrecorded_bytes(self.db, digest, self.storage.delete_blob)
        except Exception:  # noqa: BLE001 - the push's own error matters; GC removes orphans
            log.warning("could not remove the unrecorded bytes of %s", digest, exc_info=True)

    def _discard(self, upload_id: str, row: UploadRow | None = None) -> None:
        self.hashes.drop(upload_id)
        self.storage.delete_upload(upload_id, row.storage if row else None)
        with self.db.write() as conn:
            self.db.delete_upload(conn, upload_id)

    def cancel(self, name: str, upload_id: str, owner: str | None = None) -> None:
        row = self._session(name, upload_id, owner)
        self._discard(upload_id, row)

    def monolithic(
        self, name: str, digest: str, chunks: Iterable[bytes], owner: str | None = None
    ) -> tuple[str, int]:
        algorithm, _ = parse_digest(digest)
        state = self.start(name, algorithm, owner)
        try:
            return self.finish(name, state.id, digest, chunks, owner=owner)
        except BaseException:
            self._discard(state.id)
            raise

    def mount(self, name: str, digest: str, source: str | None) -> int | None:
        """Link an existing blob into ``name``; its size, or None when it can't."""
        parse_digest(digest)
        try:
            with refusals("mount"), self.db.write() as conn:
                self.db.lock_digest(conn, digest)
                # From ``source``: the blob must be linked there; without: still
                # readable in some repository (one deleted everywhere, awaiting GC,
                # can't be mounted back). One read, under the digest's lock.
                size = self.db.linked_blob_size(conn, digest, source)
                if size is None or not self.storage.blob_exists(digest):
                    raise _NotMountable
                repo_id = self.db.ensure_repository(conn, name)
                self.db.record_blob(conn, repo_id, digest, size)
                self.db.events.emit(conn, "blob.mounted", repository=name, digest=digest,
                                    size=size, from_repository=source)
        except _NotMountable:
            return None  # rolled back: nothing was written, nothing waits for the disk
        return size


class _NotMountable(Exception):
    """Ends a mount's transaction without writing (the client uploads instead)."""


_RANGE_RE = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")


def parse_content_range(content_range: str | None) -> tuple[int, int] | None:
    """Parse a PATCH Content-Range ``start-end`` (inclusive) into (start, end)."""
    if not content_range:
        return None
    value = content_range.strip()
    if value.startswith("bytes "):  # some clients send the RFC form
        value = value[6:].split("/", 1)[0]
    # ASCII digits only (str.isdigit() also takes "²"), and a bounded length.
    match = _RANGE_RE.fullmatch(value)
    if not match or int(match[2]) < int(match[1]):
        raise RangeInvalid("invalid Content-Range", {"Content-Range": content_range[:100]})
    return int(match[1]), int(match[2])


