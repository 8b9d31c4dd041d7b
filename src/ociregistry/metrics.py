"""Prometheus metrics. Correct under several gunicorn workers: when
PROMETHEUS_MULTIPROC_DIR is set (``ociregistry serve`` sets it before the
workers fork) every process writes its own files and a scrape sums them.
Counts of stored objects are read from the index at scrape time."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ociregistry.metadata.store import MetadataStore

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "registry_http_requests_total", "HTTP requests", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "registry_http_request_duration_seconds",
    "Time to answer a request, body included",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BYTES_RECEIVED = Counter("registry_http_received_bytes_total", "Request body bytes received")
BYTES_SENT = Counter("registry_http_sent_bytes_total", "Response body bytes sent")
UPLOADS_IN_PROGRESS = Gauge(
    "registry_uploads_in_progress",
    "Requests streaming blob bytes in right now",
    multiprocess_mode="livesum",
)
GC_RUNS = Counter("registry_gc_runs_total", "Garbage collections", ["outcome"])
GC_DURATION = Histogram(
    "registry_gc_duration_seconds",
    "Duration of garbage collections",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
GC_DELETED = Counter("registry_gc_deleted_total", "Objects deleted by GC", ["kind"])
GC_FREED_BYTES = Counter("registry_gc_freed_bytes_total", "Bytes freed by GC")
AUTH_FAILURES = Counter("registry_auth_failures_total", "Failed authentications", ["reason"])
ROBOT_AUTH = Counter(
    "registry_robot_auth_total",
    "Uses of robot tokens, by result (success, malformed, unknown, bad_secret, revoked, "
    "expired, disabled)",
    ["result"],
)
RATE_LIMITED = Counter(
    "registry_rate_limited_total",
    "Requests refused with 429 by a rate limit",
    ["limit"],  # per_address, per_user, auth_failures
)
UI_SESSIONS_REVOKED = Counter(
    "registry_ui_sessions_revoked_total",
    "Web UI sessions ended before they expired",
    ["reason"],  # sign_out, password_changed (seen by this registry; the CLI's are not counted)
)
QUOTA_REFUSALS = Counter(
    "registry_quota_refusals_total",
    "Pushes refused because a namespace quota would be exceeded",
    ["namespace", "kind"],  # kind: upload, mount, manifest
)
QUOTA_WARNINGS = Counter(
    "registry_quota_warnings_total",
    "Times a namespace's usage crossed its quota's warning threshold",
    ["namespace"],
)
# Every series exists from the start (at 0), so alerts on increase() see the first one.
for _limit in ("per_address", "per_user", "auth_failures"):
    RATE_LIMITED.labels(_limit)
for _reason in ("sign_out", "password_changed"):
    UI_SESSIONS_REVOKED.labels(_reason)
DEPENDENCY_UNAVAILABLE = Counter(
    "registry_dependency_unavailable_total",
    "Requests answered 503 because the database or the blob storage was unreachable",
    ["dependency"],  # database, storage
)
READINESS_FAILURES = Counter(
    "registry_readiness_failures_total",
    "Readiness probes that found a dependency unusable (a write to it failed)",
    ["dependency"],  # database, storage
)
for _dependency in ("database", "storage"):
    DEPENDENCY_UNAVAILABLE.labels(_dependency)
    READINESS_FAILURES.labels(_dependency)


def record_gc(result: object, duration: float, outcome: str = "success") -> None:
    GC_RUNS.labels(outcome).inc()
    GC_DURATION.observe(duration)
    if outcome != "success" or getattr(result, "dry_run", True):
        return
    GC_DELETED.labels("blob").inc(getattr(result, "blobs_deleted", 0))
    GC_DELETED.labels("manifest").inc(getattr(result, "manifests_deleted", 0))
    GC_DELETED.labels("upload").inc(getattr(result, "uploads_expired", 0))
    GC_FREED_BYTES.inc(getattr(result, "bytes_freed", 0))


class StoredObjectsCollector(Collector):
    """Repositories, manifests, tags, blobs and bytes stored, from the index."""

    def __init__(self, metadata: MetadataStore, max_age: float = 10.0) -> None:
        self.metadata = metadata
        self.max_age = max_age
        self._cache: tuple[float, dict[str, int]] | None = None
        self._lock = threading.Lock()

    def _counts(self) -> dict[str, int]:
        with self._lock:
            if self._cache and time.monotonic() - self._cache[0] < self.max_age:
                return self._cache[1]
            counts = self.metadata.stored_counts()
            self._cache = (time.monotonic(), counts)
            return counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._counts()
        stored = GaugeMetricFamily(
            "registry_stored_objects", "Objects in the index", labels=["kind"]
        )
        for kind in ("repositories", "manifests", "tags", "blobs", "upload_sessions"):
            stored.add_metric([kind], counts[kind])
        yield stored
        yield GaugeMetricFamily(
            "registry_storage_bytes", "Bytes of all blobs stored", value=counts["blob_bytes"]
        )


def exposition(metadata: MetadataStore | None) -> tuple[bytes, str]:
    """The metrics text of every process, plus stored-object counts."""
    from prometheus_client import REGISTRY

    registry: CollectorRegistry
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    if metadata is not None:
        registry.register(StoredObjectsCollector(metadata))
        registry.register(QuotaCollector(metadata))
        from ociregistry.events.collector import EventsCollector

        registry.register(EventsCollector(metadata))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forward(Collector):
    """Exposes the default registry's metrics inside another registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator:
        yield from self.source.collect()


# -- tag lifecycle (lifecycle/tag_rules.py, lifecycle/tag_history.py) ----------------
TAG_REFUSALS = Counter(
    "registry_tag_changes_refused_total",
    "Tag pushes, moves and deletes refused by an immutable or protected tag rule",
    ["rule", "kind", "action"],  # rule: config:immutable[0] or api:<id>
)
TAG_RESTORES = Counter("registry_tag_restores_total", "Tags restored from their history")
TAG_RESTORES.inc(0)


def record_tag_refusal(rule: str, kind: str, action: str) -> None:
    TAG_REFUSALS.labels(rule, kind, action).inc()


def record_tag_restore() -> None:
    TAG_RESTORES.inc()
# -- lifecycle (lifecycle/): pull statistics and retention ------------------------------
PULL_FLUSHES = Counter("registry_pull_stats_flushes_total",
                       "Pull-statistics buffers written to the index", ["outcome"])
RETENTION_RUNS = Counter("registry_retention_runs_total", "Retention runs", ["outcome"])
RETENTION_DELETED = Counter("registry_retention_deleted_total",
                            "Tags and manifests deleted by retention", ["kind"])
for _outcome in ("success", "dry_run", "error", "busy"):
    RETENTION_RUNS.labels(_outcome)
for _kind in ("tag", "manifest"):
    RETENTION_DELETED.labels(_kind)
for _outcome in ("success", "error"):
    PULL_FLUSHES.labels(_outcome)
class QuotaCollector(Collector):
    """Usage and limit of every namespace quota, from the index at scrape time."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from ociregistry.metadata.quota_queries import list_quotas

        usage = GaugeMetricFamily("registry_quota_usage_bytes",
                                  "Bytes a namespace uses (distinct blobs + open uploads)",
                                  labels=["namespace"])
        limit = GaugeMetricFamily("registry_quota_limit_bytes", "A namespace's quota",
                                  labels=["namespace"])
        for row in list_quotas(self.metadata):
            usage.add_metric([row.pattern], row.usage)
            limit.add_metric([row.pattern], row.limit_bytes)
        yield usage
        yield limit
# Events (webhooks). Pending counts and ages per endpoint come from the index at
# scrape time (events/collector.py), like the stored-object counts.
EVENTS_WRITTEN = Counter("registry_events_written_total", "Events written to the outbox",
                         ["action"])
EVENT_DELIVERIES = Counter(
    "registry_event_deliveries_total",
    "Events delivered, failed (per attempt) or dead, by endpoint",
    ["endpoint", "outcome"],
)
EVENT_ENDPOINTS_DISABLED = Counter(
    "registry_event_endpoints_disabled_total",
    "Endpoints disabled after too many consecutive failures", ["endpoint"],
)
# Pull-through cache (mirror/). "result": hit (served from the cache, no upstream
# request), revalidated (one HEAD upstream said unchanged), miss (fetched), stale
# (upstream failed: the cached copy served), negative (a cached upstream 404).
MIRROR_REQUESTS = Counter(
    "registry_mirror_requests_total", "Mirrored manifest and blob requests by result",
    ["upstream", "kind", "result"],
)
MIRROR_UPSTREAM_REQUESTS = Counter(
    "registry_mirror_upstream_requests_total",
    "Requests to upstreams by kind (manifest, blob, other), method and status (or timeout,"
    " connection, tls, redirect, auth)",
    ["upstream", "kind", "method", "status"],
)
MIRROR_UPSTREAM_BYTES = Counter(
    "registry_mirror_upstream_bytes_total", "Blob and manifest bytes fetched from upstreams",
    ["upstream"],
)
MIRROR_RATELIMIT_REMAINING = Gauge(
    "registry_mirror_upstream_ratelimit_remaining",
    "The last RateLimit-Remaining an upstream announced", ["upstream"],
    multiprocess_mode="mostrecent",
)
EVENT_BATCH_SIZE = Histogram(
    "registry_event_batch_size", "Events carried by one delivery request", ["endpoint"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
# Mirror space and pre-fetch (mirror/eviction.py, mirror/prefetch.py).
MIRROR_EVICTION_RUNS = Counter("registry_mirror_eviction_runs_total",
                               "Mirror eviction runs by outcome (success, dry_run, error, busy)",
                               ["outcome"])
MIRROR_EVICTED = Counter("registry_mirror_evicted_total",
                         "Tags and manifests evicted from an upstream's cache",
                         ["upstream", "kind"])
MIRROR_EVICTED_BYTES = Counter("registry_mirror_evicted_bytes_total",
                               "Bytes (distinct blobs + manifests) an upstream's cache no "
                               "longer holds after eviction (GC frees them)", ["upstream"])
MIRROR_PREFETCH_RUNS = Counter("registry_mirror_prefetch_runs_total",
                               "Mirror pre-fetch runs by outcome (success, partial, dry_run, "
                               "error)", ["upstream", "outcome"])
MIRROR_PREFETCH_TAGS = Counter("registry_mirror_prefetch_tags_total",
                               "Tags pulled by pre-fetch runs, by outcome (pulled, failed)",
                               ["upstream", "outcome"])
MIRROR_PREFETCH_BYTES = Counter("registry_mirror_prefetch_bytes_total",
                                "Bytes pre-fetch runs read through the cache", ["upstream"])
for _outcome in ("success", "dry_run", "error", "busy"):
    MIRROR_EVICTION_RUNS.labels(_outcome)


# -- /v2 tags list pages kept in process (metadata/tag_list_cache.py) ------------------
TAGS_LIST_CACHE = Counter("registry_tags_list_cache_lookups_total",
                          "Tags list pages looked up in the worker's cache", ["result"])
_TAGS_LIST_HIT, _TAGS_LIST_MISS = TAGS_LIST_CACHE.labels("hit"), TAGS_LIST_CACHE.labels("miss")


def record_tags_list_cache(hit: bool) -> None:
    (_TAGS_LIST_HIT if hit else _TAGS_LIST_MISS).inc()


# -- the filesystem driver's flushes (storage/filesystem.py, storage/flush_ahead.py) ------
PUBLISH_FLUSH = Histogram(
    "registry_storage_publish_flush_seconds",
    "How long a pushed blob waited for its bytes and its name to reach the disk before "
    "it was recorded (filesystem driver, storage.fsync): the disk's share of a push",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
FLUSHES_AHEAD = Counter(
    "registry_storage_flushes_ahead_total",
    "Flushes of upload files started while they were being written (storage.flush_ahead)")
UPLOAD_CACHE_DROPS = Counter(
    "registry_storage_upload_cache_drops_total",
    "Times a flushed upload was dropped from the page cache but for its last "
    "storage.cache_upload_tail_mib (its pages then serve the next writes)")


# -- SQLite's writer queue (metadata/writer_queue.py) -----------------------------------
WRITER_QUEUE_TIMEOUTS = Counter(
    "registry_sqlite_writer_queue_timeouts_total",
    "SQLite writes that waited the whole busy timeout for the writer queue and went on "
    "without it (a writer holding it is stuck)")
