"""Online mark and sweep garbage collection.

No read-only mode: every deletion is decided inside a write transaction that
re-checks "nothing references it and it is older than the grace period", so a
manifest push that references a blob and a sweep that deletes it cannot both
succeed. Fresh blobs are protected by the grace period, counted from the last
upload or mount that touched them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ociregistry import metrics
from ociregistry.metadata import backup_lease
from ociregistry.metadata import gc_queries as q
from ociregistry.metadata import tag_history_queries as history_queries
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.base import BlobStorage

Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)


@dataclass
class GCResult:
    dry_run: bool
    manifests_deleted: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0
    uploads_expired: int = 0
    orphan_files_deleted: int = 0
    duration_seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class GCAlreadyRunning(Exception):
    pass


# The GC lock expires unless renewed: a GC whose process was killed blocks the
# next one for two minutes, not for hours.
LOCK_TTL = 120.0
LOCK_RENEW_EVERY = 15.0


class GarbageCollector:
    def __init__(
        self,
        metadata: MetadataStore,
        storage: BlobStorage,
        grace_seconds: float = 3600,
        upload_ttl_seconds: float = 86400,
        restore_window_seconds: float = 0,
        history_keep_seconds: float = 0,
    ) -> None:
        self.db = metadata
        self.storage = storage
        self.grace = grace_seconds
        self.upload_ttl = upload_ttl_seconds
        # Tag history names digests a tag may be restored to: kept this long.
        self.restore_window = restore_window_seconds
        self.history_keep = max(history_keep_seconds, restore_window_seconds)

    def run(
        self,
        dry_run: bool = False,
        delete_untagged: bool = False,
        progress: Progress | None = None,
        holder: str | None = None,
    ) -> GCResult:
        """``holder``: a lock already taken with ``acquire`` (a run started elsewhere
        is then refused before the caller returns, not later in a thread)."""
        result = self._locked(dry_run, delete_untagged, progress, None, holder)
        assert result is not None
        return result

    def acquire(self) -> str | None:
        """Take the cluster-wide GC lock for a run to come; its holder, or None when
        a collection is running. Pass the holder to ``run``; it expires if never run."""
        holder = self._holder()
        return holder if self.db.try_lock("gc", holder, ttl=LOCK_TTL) else None

    @staticmethod
    def _holder() -> str:
        return f"{os.uname().nodename}:{os.getpid()}:{time.time()}"

    def run_if_due(self, interval: float, delete_untagged: bool = False) -> GCResult | None:
        """Run unless a run finished less than ``interval`` seconds ago.

        Decided while holding the cluster-wide lock, so one run per interval
        whatever number of workers and instances ask.
        """
        return self._locked(False, delete_untagged, None, interval)

    def _renewing(self, holder: str, progress: Progress | None) -> Progress:
        """Progress callback that also keeps the GC lock alive."""
        renewed = [time.monotonic()]

        def report(phase: str, done: int, total: int) -> None:
            if time.monotonic() - renewed[0] > LOCK_RENEW_EVERY:
                self.db.try_lock("gc", holder, ttl=LOCK_TTL)
                renewed[0] = time.monotonic()
            if progress is not None:
                progress(phase, done, total)

        return report

    def _locked(
        self,
        dry_run: bool,
        delete_untagged: bool,
        progress: Progress | None,
        due_interval: float | None,
        holder: str | None = None,
    ) -> GCResult | None:
        holder = holder or self._holder()
        if not self.db.try_lock("gc", holder, ttl=LOCK_TTL):
            raise GCAlreadyRunning("a garbage collection is already running")
        started = time.monotonic()
        try:
            if due_interval is not None:
                last = q.last_finished_run(self.db)
                if last is not None and last > time.time() - due_interval:
                    return None
            result = self._run(dry_run, delete_untagged, self._renewing(holder, progress))
        except Exception:
            metrics.record_gc(None, time.monotonic() - started, "error")
            raise
        finally:
            self.db.unlock("gc", holder)
        metrics.record_gc(result, time.monotonic() - started)
        return result

    def _run(self, dry_run: bool, delete_untagged: bool, progress: Progress) -> GCResult:
        started = time.time()
        cutoff = started - self.grace
        result = GCResult(dry_run=dry_run)
        self._expire_uploads(started, dry_run, result, progress)
        keep_since = started - self.restore_window
        if not dry_run:  # history past its time, manifests kept for restores past the window
            history_queries.prune(self.db, started - self.history_keep, keep_since)
        gone: set[int] = set()  # manifests a dry run counts as deleted
        if delete_untagged:
            gone = self._sweep_manifests(cutoff, dry_run, result, progress, keep_since)
        self._sweep_blobs(cutoff, dry_run, result, progress, gone, keep_since)
        if not dry_run:  # what this run found alive for good is not examined again
            q.settle_candidates(self.db)
        self._sweep_orphan_files(cutoff, dry_run, result, progress)
        result.duration_seconds = round(time.time() - started, 3)
        if not dry_run:
            stats = asdict(result)
            q.record_run(
                self.db,
                started,
                dry_run,
                {k: stats[k] for k in ("manifests_deleted", "blobs_deleted", "bytes_freed",
                                       "uploads_expired")},
            )
        return result

    def _expire_uploads(
        self, now: float, dry_run: bool, result: GCResult, progress: Progress
    ) -> None:
        stale = self.db.stale_uploads(now - self.upload_ttl)
        for i, upload_id in enumerate(stale, 1):
            if not dry_run:
                self.storage.delete_upload(upload_id)
                with self.db.write() as conn:
                    self.db.delete_upload(conn, upload_id)
            result.uploads_expired += 1
            progress("uploads", i, len(stale))
        # Upload files whose session row is gone (a crash between the two).
        known = self.db.upload_ids()
        for upload_id, modified in list(self.storage.list_uploads()):
            if upload_id not in known and modified < now - self.upload_ttl:
                if not dry_run:
                    self.storage.delete_upload(upload_id)
                result.uploads_expired += 1

    def _sweep_manifests(
        self, cutoff: float, dry_run: bool, result: GCResult, progress: Progress,
        keep_since: float | None = None,
    ) -> set[int]:
        if dry_run:
            # Count what the real run would delete, rounds included, by treating
            # the manifests found so far as gone.
            gone: set[int] = set()
            while found := q.untagged_manifests(self.db, cutoff, gone, keep_since):
                gone.update(manifest_id for manifest_id, _repo, _digest in found)
                progress("manifests", len(gone), len(gone))
            result.manifests_deleted = len(gone)
            return gone
        # Deleting an index frees its children, a subject frees its referrers:
        # repeat until nothing more goes.
        while True:
            found = q.untagged_manifests(self.db, cutoff, keep_since=keep_since)
            deleted = 0
            for i, (manifest_id, _repo, _digest) in enumerate(found, 1):
                if q.delete_untagged_manifest(self.db, manifest_id, cutoff, keep_since):
                    deleted += 1
                progress("manifests", i, len(found))
            result.manifests_deleted += deleted
            if not deleted:
                return set()

    def _sweep_blobs(
        self,
        cutoff: float,
        dry_run: bool,
        result: GCResult,
        progress: Progress,
        gone: set[int] | None = None,
        keep_since: float | None = None,
    ) -> None:
        found = q.unreferenced_blobs(self.db, cutoff, gone or set(), keep_since)
        if found and not dry_run and backup_lease.holder(self.db) is not None:
            # Each deletion would refuse anyway (checked in its transaction).
            log.info("a backup holds its lease: %d unreferenced blobs kept for a later run",
                     len(found))
            return
        for i, (digest, size) in enumerate(found, 1):
            if dry_run or q.delete_blob_if_unreferenced(self.db, digest, cutoff, keep_since):
                if not dry_run:  # committed: now the bytes (if this stops, an orphan)
                    q.remove_unrecorded_bytes(self.db, digest, self.storage.delete_blob)
                result.blobs_deleted += 1
                result.bytes_freed += size
            progress("blobs", i, len(found))

    def _sweep_orphan_files(
        self, cutoff: float, dry_run: bool, result: GCResult, progress: Progress
    ) -> None:
        """Bytes with no index row: a crash between writing a blob and recording it."""
        known = q.known_blobs(self.db)
        seen = 0
        for seen, stored in enumerate(self.storage.iter_blobs(), 1):
            if seen % 1000 == 0:  # the total is unknown while walking
                progress("files", seen, seen + 1)
            if stored.digest in known or stored.modified >= cutoff:
                continue
            # Re-checked under the digest's lock: an upload may have just recorded it.
            remove = (lambda _digest: None) if dry_run else self.storage.delete_blob
            if not q.remove_unrecorded_bytes(self.db, stored.digest, remove):
                continue
            result.orphan_files_deleted += 1
            result.bytes_freed += stored.size
        progress("files", seen, seen)
