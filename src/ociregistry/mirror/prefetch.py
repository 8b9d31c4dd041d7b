"""Pre-fetch: keep an upstream's listed repositories and tag patterns warm.

A run lists each ``prefetch`` entry's tags upstream (``/v2/<repo>/tags/list``,
paginated), keeps those matching its glob, and pulls each through the cache's own
fill path (a ``PrefetchSource``: the mirror's upstream client and fill functions),
so that what it stores is checked, locked and accounted exactly as a client's pull
would be, and a fresh tag costs one HEAD at most. This module only sequences and
records: progress goes to ``mirror_sync_runs`` as it happens (the API and UI poll
it) and to a callback (the CLI's progress bar).

One real run per upstream at a time across instances (lock row
``mirror-sync:<upstream>``, renewed while it runs). A dry run lists what would be
pulled and pulls nothing. One tag's failure is recorded and the run goes on.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ociregistry import metrics
from ociregistry.core.actor import Actor, acting_as, current_actor
from ociregistry.metadata import mirror_space_queries as sq
from ociregistry.metadata.store import MetadataStore
from ociregistry.mirror.settings import MirrorSettings, UpstreamSettings

log = logging.getLogger("ociregistry.mirror")
LOCK_TTL = 120.0
MAX_TAGS = 10000  # per prefetch entry: a pattern such as "*" on a huge repository stops here

# (phase, done, total), as cli_ops.ProgressPrinter takes it
Progress = Callable[[str, int, int], None]


class PrefetchSource(Protocol):
    """What pre-fetch needs of the mirror: the upstream's tags, and a pull through the
    cache. Both raise on failure (any exception: recorded for that tag or entry)."""

    def list_tags(self, upstream: UpstreamSettings, repository: str) -> Iterable[str]:
        """Every tag of ``repository`` upstream, following the Link pagination."""
        ...

    def pull(self, upstream: UpstreamSettings, repository: str, tag: str) -> int:
        """Bring ``repository:tag`` (manifest, children, blobs) into the cache as a
        client's pull would; the bytes fetched or read through the cache."""
        ...


class SyncRunning(Exception):
    pass


@dataclass
class SyncResult:
    run_id: int
    upstream: str
    dry_run: bool
    planned: list[tuple[str, str]] = field(default_factory=list)  # (repository, tag)
    pulled: list[tuple[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    bytes: int = 0

    @property
    def status(self) -> str:
        return "done" if not self.failed else "partial"

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "upstream": self.upstream, "dry_run": self.dry_run,
                "tags_total": len(self.planned), "tags_done": len(self.pulled),
                "tags_failed": len(self.failed), "bytes": self.bytes}


class PrefetchService:
    def __init__(self, store: MetadataStore, settings: MirrorSettings,
                 source: PrefetchSource | None) -> None:
        self.db = store
        self.settings = settings
        self.source = source  # None until the mirror's fill path is built

    def plan(self, upstream: UpstreamSettings,
             failed: list[dict[str, str]] | None = None) -> list[tuple[str, str]]:
        """(repository, tag) of every upstream tag the prefetch list names, in order."""
        if self.source is None:
            raise RuntimeError("the mirror's fill path is not available in this process")
        out: list[tuple[str, str]] = []
        for entry in upstream.prefetch:
            try:
                tags = []
                for tag in self.source.list_tags(upstream, entry.repository):
                    if fnmatch.fnmatchcase(tag, entry.tags):
                        tags.append(tag)
                        if len(tags) >= MAX_TAGS:
                            break
            except Exception as exc:  # one unlistable repository does not stop the others
                if failed is None:
                    raise
                failed.append({"repository": entry.repository, "tag": "",
                               "error": f"listing tags: {exc}"[:500]})
                continue
            out += [(entry.repository, tag) for tag in sorted(set(tags))]
        return out

    def run(self, upstream: str, dry_run: bool = False, trigger: str = "cli",
            progress: Progress | None = None, run_id: int | None = None,
            due_after: float | None = None) -> SyncResult:
        settings = self.settings.by_name(upstream)
        if settings is None:
            raise KeyError(upstream)
        lock = f"mirror-sync:{upstream}"[:64]
        holder = f"{os.uname().nodename}:{os.getpid()}:{time.time()}"
        if not dry_run and not self.db.try_lock(lock, holder, ttl=LOCK_TTL):
            if run_id is not None:
                sq.update_sync_run(self.db, run_id, status="failed", finished_at=time.time(),
                                   error="another pre-fetch run of this upstream is going on")
            raise SyncRunning(f"a pre-fetch run of {upstream} is already going on")
        try:
            if due_after is not None:
                last = sq.last_sync_started(self.db, upstream)
                if last is not None and last >= due_after:
                    return SyncResult(0, upstream, dry_run)  # another instance ran it
            if run_id is None:
                run_id = sq.start_sync_run(self.db, upstream, dry_run, trigger,
                                           current_actor().label)
            result = SyncResult(run_id, upstream, dry_run)
            try:
                with acting_as(Actor("system", f"mirror-sync:{upstream}")):
                    self._run(settings, result, progress,
                              lambda: self.db.try_lock(lock, holder, LOCK_TTL))
            except Exception as exc:
                sq.update_sync_run(self.db, run_id, status="failed", finished_at=time.time(),
                                   error=str(exc), problems=result.failed)
                metrics.MIRROR_PREFETCH_RUNS.labels(upstream, "error").inc()
                raise
            outcome = "dry_run" if dry_run else ("success" if not result.failed else "partial")
            sq.update_sync_run(self.db, run_id, status=result.status, finished_at=time.time(),
                               tags_total=len(result.planned), tags_done=len(result.pulled),
                               tags_failed=len(result.failed), bytes=result.bytes,
                               problems=result.failed)
            metrics.MIRROR_PREFETCH_RUNS.labels(upstream, outcome).inc()
            log.info("mirror pre-fetch: %s", result.summary())
            return result
        finally:
            if not dry_run:
                self.db.unlock(lock, holder)

    def _run(self, upstream: UpstreamSettings, result: SyncResult,
             progress: Progress | None, renew: Callable[[], bool]) -> None:
        result.planned = self.plan(upstream, result.failed)
        total = len(result.planned)
        sq.update_sync_run(self.db, result.run_id, tags_total=total, problems=result.failed)
        if progress:
            progress("pre-fetch", 0, total)
        if result.dry_run or self.source is None:
            return
        written = renewed = time.monotonic()
        for n, (repository, tag) in enumerate(result.planned, 1):
            try:
                result.bytes += int(self.source.pull(upstream, repository, tag) or 0)
                result.pulled.append((repository, tag))
                metrics.MIRROR_PREFETCH_TAGS.labels(upstream.name, "pulled").inc()
            except Exception as exc:
                log.warning("pre-fetch of %s/%s:%s failed: %s", upstream.name, repository,
                            tag, exc)
                result.failed.append({"repository": repository, "tag": tag,
                                      "error": str(exc)[:500]})
                metrics.MIRROR_PREFETCH_TAGS.labels(upstream.name, "failed").inc()
            if progress:
                progress("pre-fetch", n, total)
            now = time.monotonic()
            if now - written > 1 or n == total:  # the API's view, about once a second
                sq.update_sync_run(self.db, result.run_id, tags_done=len(result.pulled),
                                   tags_failed=len(result.failed), bytes=result.bytes,
                                   problems=result.failed)
                written = now
            if now - renewed > LOCK_TTL / 4:
                renew()
                renewed = now
        metrics.MIRROR_PREFETCH_BYTES.labels(upstream.name).inc(result.bytes)

    def start(self, upstream: str, dry_run: bool = False, trigger: str = "api") -> int:
        """Start a run in a background thread of this process; its run id at once."""
        if self.settings.by_name(upstream) is None:
            raise KeyError(upstream)
        run_id = sq.start_sync_run(self.db, upstream, dry_run, trigger, current_actor().label)

        def work() -> None:
            try:
                self.run(upstream, dry_run, trigger, run_id=run_id)
            except Exception:
                log.exception("pre-fetch run %s of %s failed", run_id, upstream)

        threading.Thread(target=work, name=f"mirror-sync-{run_id}", daemon=True).start()
        return run_id

    def run_if_due(self, upstream: str, due_after: float) -> SyncResult | None:
        try:
            with acting_as(Actor("system", "scheduler")):
                result = self.run(upstream, trigger="schedule", due_after=due_after)
        except SyncRunning:
            return None
        return result if result.run_id else None

    def runs(self, upstream: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return sq.sync_runs(self.db, upstream, limit)

    def run_record(self, run_id: int) -> dict[str, Any] | None:
        return sq.sync_run(self.db, run_id)
