"""The blob storage interface: where blob bytes and upload bytes live."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass


@dataclass
class StoredBlob:
    digest: str
    size: int
    modified: float  # seconds since the epoch


class UploadWriter(ABC):
    """Appends to an upload while holding it exclusively (across processes)."""

    offset: int

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def rollback(self, offset: int) -> None:
        """Drop everything written after ``offset`` (a failed or truncated chunk)."""


class BlobStorage(ABC):
    @abstractmethod
    def create_upload(self, upload_id: str) -> None: ...

    @abstractmethod
    def upload_size(self, upload_id: str) -> int | None:
        """Bytes received so far, or None when the upload has no data file."""

    @abstractmethod
    def append_upload(self, upload_id: str) -> AbstractContextManager[UploadWriter]: ...

    @abstractmethod
    def read_upload(self, upload_id: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    @abstractmethod
    def commit_upload(self, upload_id: str, digest: str) -> None:
        """Atomically make the upload's bytes the blob ``digest``."""

    @abstractmethod
    def delete_upload(self, upload_id: str) -> None: ...

    @abstractmethod
    def list_uploads(self) -> Iterator[tuple[str, float]]:
        """(upload id, last modified) of every upload with data."""

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
