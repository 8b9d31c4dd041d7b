"""The blob storage interface: where blob bytes and upload bytes live."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any


@dataclass
class StoredBlob:
    digest: str
    size: int
    modified: float  # seconds since the epoch


class UploadWriter(ABC):
    """Appends to an upload while holding it exclusively.

    Finishing is three steps so that slow work stays outside the metadata
    transaction: ``stage`` (outside: flush, upload, copy), ``commit`` (inside,
    with the digest locked: make the blob visible), ``cleanup`` (after it).
    """

    offset: int
    # Called before each piece goes to the store; raises when the writer has lost
    # the session (set by the upload service for drivers with leases).
    before_part: Callable[[], None] | None = None
    # True when ``write`` mostly waits (for the disk) and may run on a helper thread
    # while the request thread receives (core/hashpipe.py); ``flush`` then follows.
    write_behind: bool = False

    @abstractmethod
    def write(self, data: bytes | memoryview) -> None: ...

    def write_many(self, chunks: list[Any]) -> None:
        """``write`` of each chunk in order (a writer may issue them together)."""
        for chunk in chunks:
            self.write(chunk)

    @abstractmethod
    def rollback(self, offset: int) -> None:
        """Drop everything written after ``offset`` (a failed or truncated chunk)."""

    @abstractmethod
    def read_back(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Every byte written so far (to re-hash when no hash state can be resumed)."""

    def flush(self) -> None:
        """Write out what ``write`` kept back (the end of a request's bytes)."""
        return None

    def save(self) -> dict[str, Any] | None:
        """Make what was written durable for the next writer, which may be another
        instance; the driver's state to keep with the session (None: none)."""
        return None

    # True once stage() has put the blob's bytes under its name already (filesystem,
    # fsync on): if the index then does not record the blob, the caller removes that
    # file under the digest's lock unless another upload recorded the digest meanwhile.
    published_early: bool = False

    @abstractmethod
    def stage(self, digest: str) -> None:
        """Prepare the bytes to become blob ``digest`` (its hash was checked)."""

    @abstractmethod
    def commit(self, digest: str) -> None:
        """Make the staged bytes the blob ``digest``; called with the digest locked."""

    def cleanup(self) -> None:
        """Drop what the upload left behind, once the blob or the new state is recorded."""
        return None


class BlobStorage(ABC):
    # True when only the metadata row knows an upload's progress (the storage
    # can't report it, and sessions are serialised by a lease in the row).
    tracks_uploads: bool = False

    @abstractmethod
    def create_upload(self, upload_id: str) -> None: ...

    @abstractmethod
    def upload_size(self, upload_id: str) -> int | None:
        """Bytes received so far, or None when the upload has no data (untracked drivers)."""

    @abstractmethod
    def append_upload(
        self, upload_id: str, state: dict[str, Any] | None = None
    ) -> AbstractContextManager[UploadWriter]: ...

    @abstractmethod
    def delete_upload(self, upload_id: str, state: dict[str, Any] | None = None) -> None:
        """Drop an upload's bytes (with no state: whatever is found under its id)."""

    @abstractmethod
    def list_uploads(self) -> Iterator[tuple[str, float]]:
        """(upload id, last modified) of every upload with data in the storage."""

    def blob_url(self, digest: str) -> str | None:
        """A URL the client may fetch the blob from directly (a redirect), or None."""
        return None

    @abstractmethod
    def blob_exists(self, digest: str) -> bool: ...

    @abstractmethod
    def blob_path(self, digest: str) -> str | None:
        """A local file path for zero-copy sends, when the driver has one."""

    @abstractmethod
    def open_blob(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    @abstractmethod
    def read_blob_range(
        self, digest: str, start: int, length: int, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """``length`` bytes of a blob from ``start`` (the range was checked against its size)."""

    @abstractmethod
    def delete_blob(self, digest: str) -> None: ...

    @abstractmethod
    def iter_blobs(self) -> Iterator[StoredBlob]: ...

    @abstractmethod
    def check(self) -> None:
        """Raise when the storage cannot be used (for readiness checks)."""

    def link_upload(self, upload_id: str, path: str) -> bool:
        """Make the (empty) upload ``upload_id`` hold the local file ``path`` without
        copying it (a hard link); False when this driver or filesystem can't."""
        return False
    def probe_write(self) -> None:
        """Raise when a push could not write here now (readiness: a real, small write)."""
        self.check()
