"""Builds the registry's parts from settings (used by the web app and the CLI)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ociregistry import metrics
from ociregistry.config import Settings
from ociregistry.core.gc import GarbageCollector
from ociregistry.core.registry import Registry, RegistryOptions
from ociregistry.lifecycle.quotas import QuotaService
from ociregistry.lifecycle.tags import TagServices, build_tag_services
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
    quotas: QuotaService  # namespace quotas (lifecycle/quotas.py)
    tags: TagServices | None = None  # immutable/protected tags, history, restore
    pulls: Any = None  # lifecycle.pull_stats.PullRecorder, when pull_stats.enabled
    retention: Any = None  # lifecycle.retention.RetentionService
    events: Any = None  # events.service.EventsRuntime, None when events are off
    mirror: Any = None  # mirror.service.MirrorService (pull-through cache, docs/mirror.md)
    mirror_manage: Any = None  # mirror.manage.MirrorManager: eviction, pre-fetch, state


def _mib(value: int | None) -> int | None:
    return None if value is None else value << 20


def build_storage(settings: Settings) -> BlobStorage:
    if settings.storage.driver == "filesystem":
        return FilesystemStorage(settings.storage_root, fsync=settings.storage.fsync,
                                 direct_writes=settings.storage.direct_writes,
                                 cache_new_blobs=settings.storage.cache_new_blobs,
                                 read_back_when_idle=settings.storage.read_back_when_idle,
                                 flush_ahead=settings.storage.flush_ahead,
                                 cache_upload_tail=_mib(settings.storage.cache_upload_tail_mib))
    if settings.storage.driver == "s3":
        from ociregistry.storage.s3 import S3Storage  # boto3 loads only when used

        return S3Storage(settings.storage.s3)
    raise ValueError(f"unknown storage driver {settings.storage.driver!r}")


def build_runtime(settings: Settings, migrate: bool = False) -> Runtime:
    metadata = MetadataStore(
        settings.database_url,
        pool_size=settings.database.pool_size,
        durable=settings.storage.fsync,
        tags_cache_bytes=settings.database.tags_list_cache_kib * 1024,
    )
    if metadata.tags_cache is not None:
        metadata.tags_cache.record = metrics.record_tags_list_cache
    if metadata.writer_queue is not None:
        metadata.writer_queue.on_gave_up = metrics.WRITER_QUEUE_TIMEOUTS.inc
    if migrate:
        before, after = metadata.create_schema()
        if before != after:  # one line, not alembic's one per revision
            from ociregistry.metadata.migrate import describe

            logging.getLogger(__name__).info(describe(before, after))
    storage = build_storage(settings)
    if isinstance(storage, FilesystemStorage):
        storage.on_publish_flush = metrics.PUBLISH_FLUSH.observe
        storage.on_flush_ahead = metrics.FLUSHES_AHEAD.inc
        storage.on_upload_cache_drop = metrics.UPLOAD_CACHE_DROPS.inc
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
        restore_window_seconds=settings.tags.restore_window_seconds,
        history_keep_seconds=settings.tags.history_keep_seconds,
    )
    quotas = QuotaService(metadata, settings.quotas)
    registry.uploads.quotas = quotas  # checks sizes known before bytes are read
    tags = build_tag_services(settings, metadata, registry)
    runtime = Runtime(settings, metadata, storage, registry, gc, quotas, tags)
    _build_lifecycle(runtime)
    _build_events(runtime)
    _build_mirror(runtime)
    from ociregistry.mirror.wiring import build_mirror_management

    runtime.mirror_manage = build_mirror_management(runtime)
    return runtime


def _build_lifecycle(runtime: Runtime) -> None:
    from ociregistry.lifecycle.pull_stats import PullRecorder
    from ociregistry.lifecycle.retention import RetentionService

    settings = runtime.settings
    if settings.pull_stats.enabled:
        runtime.pulls = PullRecorder(runtime.metadata, settings.pull_stats.flush_interval_seconds)
        runtime.registry.pulls = runtime.pulls
    runtime.retention = RetentionService(
        runtime.metadata, runtime.storage, settings.retention,
        grace=settings.gc.grace_period_seconds,
        # Retention never deletes an immutable tag; the tags it deletes go through
        # the store's tag hook (retention_queries), so history can restore them.
        protected=runtime.tags.rules.is_immutable if runtime.tags else None)


def _build_events(runtime: Runtime) -> None:
    from ociregistry.events.lifecycle import connect as connect_lifecycle_events
    from ociregistry.events.service import setup as setup_events

    runtime.events = setup_events(runtime.metadata, runtime.settings.events)
    connect_lifecycle_events(runtime.metadata, runtime.retention)


def _build_mirror(runtime: Runtime) -> None:
    from ociregistry.mirror.service import MirrorService

    runtime.mirror = MirrorService(runtime.settings.mirror, runtime.registry)
