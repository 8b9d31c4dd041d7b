"""Readers of a Distribution store's layout, on a filesystem or in S3.

Distribution (2.x) keeps everything under ``docker/registry/v2/``:

    blobs/sha256/<xx>/<hex>/data                            every blob, manifests too
    repositories/<name>/_layers/sha256/<hex>/link           blobs linked into <name>
    repositories/<name>/_manifests/revisions/sha256/<hex>/link   its manifests
    repositories/<name>/_manifests/tags/<tag>/current/link  what a tag points at
    repositories/<name>/_uploads/...                        uploads in progress (ignored)

A source lists files with their sizes (so empty link files are seen without
reading them), reads small files, and streams blobs chunk by chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Protocol

V2 = "docker/registry/v2"
CHUNK = 1 << 20


class SourceError(Exception):
    """The store cannot be read at all (wrong path, no bucket, no access)."""


class Source(Protocol):
    """A Distribution store, read-only."""

    def repository_files(self) -> Iterator[tuple[str, int]]:
        """(path under repositories/, size) of every file there."""

    def read_repository_file(self, rel: str) -> bytes: ...

    def blobs(self) -> Iterator[tuple[str, int]]:
        """(digest, size) of every blob's data file."""

    def blob_size(self, digest: str) -> int | None:
        """The size of one blob now (None: not there): for what arrived after the listing."""

    def open_blob(self, digest: str) -> Iterator[bytes]: ...

    def read_blob(self, digest: str, limit: int) -> bytes:
        """A small blob (a manifest) whole; at most ``limit`` bytes are read."""

    def describe(self, rel: str) -> str:
        """Where a file under repositories/ is, for reports."""

    def blob_location(self, digest: str) -> str: ...

    def local_path(self, digest: str) -> str | None:
        """The blob's file on this machine (for hard links), or None."""


def _blob_rel(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart[:2]}/{hexpart}/data"


def _digest_of_blob_rel(rel: str) -> str | None:
    """``<alg>/<xx>/<hex>/data`` (under blobs/) -> ``<alg>:<hex>``."""
    parts = rel.split("/")
    if len(parts) != 4 or parts[3] != "data" or not parts[2].startswith(parts[1]):
        return None
    return f"{parts[0]}:{parts[2]}"


class FilesystemSource:
    """A Distribution ``rootdirectory`` on a local filesystem."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.base = os.path.join(self.root, V2)
        if not os.path.isdir(os.path.join(self.base, "repositories")):
            raise SourceError(f"{self.root}: no {V2}/repositories (not a Distribution root)")

    def repository_files(self) -> Iterator[tuple[str, int]]:
        top = os.path.join(self.base, "repositories")
        for directory, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "_uploads")
            for name in sorted(files):
                path = os.path.join(directory, name)
                try:
                    size = os.stat(path).st_size
                except FileNotFoundError:  # deleted by Distribution since the listing
                    continue
                yield os.path.relpath(path, top).replace(os.sep, "/"), size

    def read_repository_file(self, rel: str) -> bytes:
        with open(os.path.join(self.base, "repositories", rel), "rb") as f:
            return f.read(4096)  # link files hold one digest

    def blobs(self) -> Iterator[tuple[str, int]]:
        top = os.path.join(self.base, "blobs")
        for directory, dirs, files in os.walk(top):
            dirs.sort()
            if "data" in files:
                digest = _digest_of_blob_rel(
                    os.path.relpath(os.path.join(directory, "data"), top).replace(os.sep, "/")
                )
                if digest:
                    try:
                        yield digest, os.stat(os.path.join(directory, "data")).st_size
                    except FileNotFoundError:
                        continue

    def blob_size(self, digest: str) -> int | None:
        try:
            return os.stat(os.path.join(self.base, _blob_rel(digest))).st_size
        except FileNotFoundError:
            return None

    def open_blob(self, digest: str) -> Iterator[bytes]:
        with open(os.path.join(self.base, _blob_rel(digest)), "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def read_blob(self, digest: str, limit: int) -> bytes:
        with open(os.path.join(self.base, _blob_rel(digest)), "rb") as f:
            return f.read(limit + 1)

    def describe(self, rel: str) -> str:
        return os.path.join(self.base, "repositories", rel)

    def blob_location(self, digest: str) -> str:
        return os.path.join(self.base, _blob_rel(digest))

    def local_path(self, digest: str) -> str | None:
        return self.blob_location(digest)


class S3Source:
    """A Distribution store in a bucket (its s3 driver's ``rootdirectory`` as prefix)."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.base = f"{prefix}/{V2}/" if prefix else f"{V2}/"
        try:
            listed = client.list_objects_v2(
                Bucket=bucket, Prefix=self.base + "repositories/", MaxKeys=1
            )
        except Exception as exc:  # botocore's errors: any of them means "can't read"
            raise SourceError(f"s3://{bucket}/{self.base}: {exc}") from exc
        if not listed.get("KeyCount"):
            raise SourceError(f"s3://{bucket}/{self.base}repositories/ holds nothing")

    def _get(self, key: str) -> Any:
        """The object's streaming body; a missing key is FileNotFoundError and any
        other failure OSError, as for files (the importer reports, and goes on)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(key) from exc
            raise OSError(f"{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise OSError(f"{key}: {exc}") from exc

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(prefix):], int(item["Size"])

    def repository_files(self) -> Iterator[tuple[str, int]]:
        for rel, size in self._list(self.base + "repositories/"):
            if "/_uploads/" not in f"/{rel}":
                yield rel, size

    def read_repository_file(self, rel: str) -> bytes:
        body = self._get(self.base + "repositories/" + rel)
        try:
            return body.read(4096)
        finally:
            body.close()

    def blobs(self) -> Iterator[tuple[str, int]]:
        for rel, size in self._list(self.base + "blobs/"):
            digest = _digest_of_blob_rel(rel)
            if digest:
                yield digest, size

    def blob_size(self, digest: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.base + _blob_rel(digest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise OSError(f"{digest}: {exc}") from exc
        return int(head["ContentLength"])

    def open_blob(self, digest: str) -> Iterator[bytes]:
        body = self._get(self.base + _blob_rel(digest))
        try:
            while chunk := body.read(CHUNK):
                yield chunk
        finally:
            body.close()

    def read_blob(self, digest: str, limit: int) -> bytes:
        body = self._get(self.base + _blob_rel(digest))
        try:
            return body.read(limit + 1)
        finally:
            body.close()

    def describe(self, rel: str) -> str:
        return f"s3://{self.bucket}/{self.base}repositories/{rel}"

    def blob_location(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self.base}{_blob_rel(digest)}"

    def local_path(self, digest: str) -> str | None:
        return None
