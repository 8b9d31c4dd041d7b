"""Builds the registry's parts from settings (used by the web app and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ociregistry.config import Settings
from ociregistry.core.gc import GarbageCollector
from ociregistry.core.registry import Registry, RegistryOptions
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.base import BlobStorage
from ociregistry.storage.filesystem import FilesystemStorage


@dataclass
class Runtime:
    settings: Settings
    metadata: MetadataStore
    storage: BlobStorage
    registry: Registry
    gc: GarbageCollector
    events: Any = None  # events.service.EventsRuntime, None when events are off


def build_storage(settings: Settings) -> BlobStorage:
    if settings.storage.driver == "filesystem":
        return FilesystemStorage(settings.storage_root, fsync=settings.storage.fsync)
    if settings.storage.driver == "s3":
        from ociregistry.storage.s3 import S3Storage  # boto3 loads only when used

        return S3Storage(settings.storage.s3)
    raise ValueError(f"unknown storage driver {settings.storage.driver!r}")


def build_runtime(settings: Settings, migrate: bool = False) -> Runtime:
    metadata = MetadataStore(
        settings.database_url,
        pool_size=settings.database.pool_size,
        durable=settings.storage.fsync,
    )
    if migrate:
        metadata.create_schema()
    storage = build_storage(settings)
    options = RegistryOptions(
        delete_enabled=settings.delete_enabled,
        max_manifest_size=settings.limits.max_manifest_size,
        max_blob_size=settings.limits.max_blob_size,
    )
    registry = Registry(metadata, storage, options)
    gc = GarbageCollector(
        metadata,
        storage,
        grace_seconds=settings.gc.grace_period_seconds,
        upload_ttl_seconds=settings.gc.upload_ttl_seconds,
    )
    from ociregistry.events.service import setup as setup_events

    events = setup_events(metadata, settings.events)
    return Runtime(settings, metadata, storage, registry, gc, events)
