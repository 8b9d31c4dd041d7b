"""The registry's rules for manifests, blobs, tags and listings (no Flask here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ociregistry.core import media_types as mt
from ociregistry.core.digests import is_digest, parse_digest
from ociregistry.core.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    Unsupported,
)
from ociregistry.core.manifests import manifest_digest, parse_manifest
from ociregistry.core.names import validate_name, validate_tag
from ociregistry.core.uploads import UploadService
from ociregistry.lifecycle.quotas import refusals
from ociregistry.metadata.store import ManifestRow, MetadataStore
from ociregistry.storage.base import BlobStorage


@dataclass
class RegistryOptions:
    delete_enabled: bool = True
    max_manifest_size: int = 4 * 1024 * 1024
    max_blob_size: int = 0  # 0: no limit
    referrers_page_size: int = 1000
    max_tags_per_push: int = 32


@dataclass
class BlobInfo:
    digest: str
    size: int
    path: str | None  # a local file for zero-copy sends, when the storage has one


@dataclass
class PushedManifest:
    digest: str
    subject: str | None
    tags: list[str] = field(default_factory=list)


class Registry:
    """Everything the API does, expressed without HTTP."""

    # lifecycle.pull_stats.PullRecorder (buffered pull counts), when enabled
    pulls: Any = None

    def __init__(
        self, metadata: MetadataStore, storage: BlobStorage, options: RegistryOptions
    ) -> None:
        self.db = metadata
        self.storage = storage
        self.options = options
        self.uploads = UploadService(metadata, storage, options.max_blob_size)

    # -- blobs ------------------------------------------------------------
    def blob(self, name: str, digest: str) -> BlobInfo:
        validate_name(name)
        parse_digest(digest)
        size = self.db.repository_blob_size(name, digest)
        if size is None:
            raise BlobUnknown(detail={"digest": digest})
        return BlobInfo(digest, size, self.storage.blob_path(digest))

    def delete_blob(self, name: str, digest: str) -> None:
        validate_name(name)
        parse_digest(digest)
        self._check_delete_enabled()
        if not self.db.unlink_blob(name, digest):
            raise BlobUnknown(detail={"digest": digest})

    def _check_delete_enabled(self) -> None:
        if not self.options.delete_enabled:
            raise Unsupported("deletes are disabled on this registry")

    # -- manifests --------------------------------------------------------
    def manifest(self, name: str, reference: str, accept: list[str] | None = None) -> ManifestRow:
        validate_name(name)
        by_digest = _is_digest_reference(reference)
        row = self.db.get_manifest(name, reference, by_digest)
        if row is None:
            raise ManifestUnknown(detail={"name": name, "reference": reference})
        if accept and row.media_type in mt.INDEXES and not _accepts(accept, row.media_type):
            # A client that can't read an index (old docker) gets the default platform.
            child = _default_platform_child(row.payload)
            if child and _accepts(accept, child[1]):
                fallback = self.db.get_manifest(name, child[0], True)
                if fallback is not None:
                    return fallback
        return row

    def record_pull(self, name: str, reference: str, digest: str) -> None:
        """A manifest GET (not HEAD) served ``digest``: counted in memory, written later."""
        if self.pulls is not None:
            self.pulls.record(name, None if is_digest(reference)
                              else reference, digest)
    def manifest_pulled(self, name: str, reference: str, row: ManifestRow) -> None:
        """A manifest GET was answered (HEADs are not pulls): an event, batched."""
        self.db.events.pulled(name, reference, row.digest, row.media_type, len(row.payload))

    def put_manifest(
        self,
        name: str,
        reference: str,
        payload: bytes,
        content_type: str | None,
        extra_tags: list[str] | None = None,
        mirrored: bool = False,
    ) -> PushedManifest:
        """Store a manifest. ``mirrored``: a copy of an upstream's (mirror/), whose
        blobs and child manifests arrive later, on demand: missing ones are allowed."""
        validate_name(name)
        if len(payload) > self.options.max_manifest_size:
            raise ManifestInvalid(
                "manifest too large", {"max": self.options.max_manifest_size}, status=413
            )
        by_digest = _is_digest_reference(reference)
        tags = [] if by_digest else [validate_tag(reference)]
        for tag in extra_tags or []:
            if tag not in tags:
                tags.append(validate_tag(tag))
        if len(tags) > self.options.max_tags_per_push:
            raise ManifestInvalid("too many tags in one push", status=414)
        parsed = parse_manifest(payload, content_type)
        algorithm = parse_digest(reference)[0] if by_digest else "sha256"
        digest = manifest_digest(payload, parsed.media_type, algorithm)
        if by_digest and digest != reference:
            raise DigestInvalid(
                "manifest digest does not match the reference",
                {"reference": reference, "digest": digest},
            )
        # A mirrored copy commits without waiting for the disk: lost in a power cut, it
        # is fetched again on the next pull (all of it or none: one transaction, ordered
        # before any later durable commit). A client's push is on disk before its 201.
        write = self.db.progress_write if mirrored else self.db.write
        with refusals("manifest"), write() as conn:
            repo_id = self.db.ensure_repository(conn, name)
            for blob in sorted(set(parsed.blobs)):
                self.db.lock_digest(conn, blob, shared=True)
            stored = self.db.linked_blob_sizes(conn, repo_id, parsed.blobs)
            stored.update(self.db.existing_manifests(conn, repo_id, parsed.children))
            missing = (set(parsed.blobs) | set(parsed.children)) - stored.keys()
            if missing and not mirrored:
                raise ManifestBlobUnknown(detail={"missing": sorted(missing)})
            _check_sizes({d: s for d, s in parsed.sizes.items() if d in stored}, stored)
            manifest_id = self.db.insert_manifest(
                conn,
                repo_id,
                digest,
                parsed.media_type,
                payload,
                parsed.subject,
                parsed.artifact_type,
                parsed.annotations,
                parsed.blobs,
                parsed.children,
            )
            for tag in tags:
                self.db.set_tag(conn, repo_id, tag, manifest_id, digest)
            self.db.events.emit(conn, "manifest.pushed", repository=name, digest=digest, tags=tags,
                                media_type=parsed.media_type, artifact_type=parsed.artifact_type,
                                size=len(payload), subject=parsed.subject)
        return PushedManifest(digest, parsed.subject, tags)

    def delete_manifest(self, name: str, reference: str) -> None:
        validate_name(name)
        self._check_delete_enabled()
        if _is_digest_reference(reference):
            deleted = self.db.delete_manifest(name, reference)
        else:
            deleted = self.db.delete_tag(name, validate_tag(reference))
        if not deleted:
            raise ManifestUnknown(detail={"name": name, "reference": reference})

    # -- listings ---------------------------------------------------------
    def tags(self, name: str, n: int | None, last: str | None) -> list[str]:
        validate_name(name)
        tags = self.db.tags(name, n, last)
        if tags is None:
            raise NameUnknown(detail={"name": name})
        return tags

    def tags_json(self, name: str, n: int | None, last: str | None
                  ) -> tuple[str, str | None, bool]:
        """``tags`` as a JSON array (text) of at most ``n``, its last, whether more
        follow (the /v2 tags list: no Python object per tag)."""
        validate_name(name)
        page = self.db.tags_json(name, n, last)
        if page is None:
            raise NameUnknown(detail={"name": name})
        return page

    def catalog(self, n: int | None, last: str | None) -> list[str]:
        return self.db.catalog(n, last)

    def referrers(
        self, name: str, digest: str, artifact_type: str | None, last: str | None
    ) -> tuple[list[dict], bool]:
        """Descriptors of manifests whose subject is ``digest``; and whether more follow."""
        validate_name(name)
        parse_digest(digest)
        page = self.options.referrers_page_size
        descriptors = self.db.referrers(name, digest, artifact_type, page + 1, last)
        return descriptors[:page], len(descriptors) > page


def _check_sizes(declared: dict[str, int], stored: dict[str, int]) -> None:
    """Every descriptor must give the size of what the registry holds under its
    digest: clients trust that size when they pull."""
    for digest in sorted(declared):
        if declared[digest] != stored[digest]:
            raise ManifestInvalid(
                "descriptor size does not match the stored content",
                {"digest": digest, "size": declared[digest], "stored": stored[digest]},
            )


def _is_digest_reference(reference: str) -> bool:
    if is_digest(reference):
        parse_digest(reference)
        return True
    if ":" in reference:
        raise DigestInvalid("invalid digest", {"digest": reference[:200]})
    return False


def _accepts(accept: list[str], media_type: str) -> bool:
    return any(a in ("*/*", media_type) for a in accept)


def _default_platform_child(payload: bytes) -> tuple[str, str] | None:
    try:
        entries = json.loads(payload).get("manifests") or []
    except ValueError:
        return None
    for entry in entries:
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return entry["digest"], entry.get("mediaType", "")
    return None
