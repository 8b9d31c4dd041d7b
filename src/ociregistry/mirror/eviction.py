"""Eviction of the pull-through cache: unused tags and the per-upstream size budget.

Each upstream's content (``<name>/...``) is planned on from one snapshot
(mirror/space.py: pure rules) and evicted through retention's deletion paths
(metadata/retention_queries.py): each tag and manifest deleted in a write
transaction that re-checks it (the tag still names the same manifest and was not
pulled since the plan; the manifest is untagged, nothing that stays holds it, it
is out of the GC grace period), with its audit row, its tag-history entry, its
event (retention's ``on_delete`` hook) and the removal of its freshness row.
The blobs are then freed by the ordinary online GC, which they no longer escape.

A run is recorded as a retention run of policy ``mirror:<upstream>``, so that
/api/v1/retention/runs and the retention page list its audit too. One real run
per upstream at a time across instances: the lock row ``mirror-evict:<upstream>``.
Dry runs plan and record, and delete nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ociregistry import metrics
from ociregistry.core.actor import Actor, acting_as, current_actor
from ociregistry.lifecycle.plan import Deletion
from ociregistry.lifecycle.retention import delete_in_batches
from ociregistry.metadata import mirror_space_queries as sq
from ociregistry.metadata import retention_queries as rq
from ociregistry.metadata.store import MetadataStore
from ociregistry.mirror.settings import MirrorSettings, UpstreamSettings
from ociregistry.mirror.space import (
    CachedManifest,
    CachedTag,
    CacheSnapshot,
    SpacePlan,
    SpaceRules,
    pinned_matcher,
    plan_space,
)

log = logging.getLogger("ociregistry.mirror")
LOCK_TTL = 300.0


def pinned_globs(upstream: UpstreamSettings) -> list[str]:
    """``pinned``, and what the prefetch list keeps warm (evicting it would only have the
    next pre-fetch run fetch it again)."""
    from ociregistry.mirror.routing import remote_repository

    return [*upstream.pinned, *(f"{remote_repository(upstream, p.repository)}:{p.tags}"
                                for p in upstream.prefetch)]


class UpstreamNotFound(Exception):
    pass


class EvictionRunning(Exception):
    pass


@dataclass
class EvictionResult:
    run_id: int
    upstream: str
    dry_run: bool
    plan: SpacePlan
    deleted: list[Deletion] = field(default_factory=list)
    skipped: list[Deletion] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        done = self.plan.deletions if self.dry_run else self.deleted
        return {"run_id": self.run_id, "upstream": self.upstream, "dry_run": self.dry_run,
                "tags": sum(1 for d in done if d.kind == "tag"),
                "manifests": sum(1 for d in done if d.kind == "manifest"),
                "skipped": len(self.skipped), "bytes_before": self.plan.bytes_before,
                "bytes_after": self.plan.bytes_after, "bytes_freed": self.plan.bytes_freed}


def policy_name(upstream: str) -> str:
    """The retention run policy of an upstream's evictions (retention_runs.policy: 64)."""
    return f"mirror:{upstream}"[:64]


class EvictionService:
    def __init__(self, store: MetadataStore, settings: MirrorSettings, grace: float,
                 protected: Callable[[str, str], bool] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = store
        self.settings = settings
        self.grace = grace
        self.protected = protected or (lambda _repository, _tag: False)
        self.clock = clock  # tests drive "now" through it, never by sleeping
        # Called inside each deletion's transaction with (connection, deletion): the
        # retention service's hook (events), connected in runtime._build_mirror_space.
        self.on_delete: Callable[[Any, Deletion], None] | None = None

    def upstream(self, name: str) -> UpstreamSettings:
        found = self.settings.by_name(name)
        if found is None:
            raise UpstreamNotFound(name)
        return found

    # -- planning -----------------------------------------------------------------
    def snapshot(self, upstream: str) -> CacheSnapshot:
        rows = sq.snapshot_rows(self.db, upstream)
        snap = CacheSnapshot(upstream)
        for mid, repo, digest, size, created, pulled, subject in rows["manifests"]:
            snap.manifests[mid] = CachedManifest(mid, repo, digest, size, created, pulled,
                                                 subject)
        children: dict[int, list[str]] = {}
        for mid, child in rows["children"]:
            children.setdefault(mid, []).append(child)
        blobs: dict[int, list[str]] = {}
        for mid, digest in rows["blobs"]:
            blobs.setdefault(mid, []).append(digest)
        for mid, m in snap.manifests.items():
            m.children = tuple(children.get(mid, ()))
            m.blobs = tuple(blobs.get(mid, ()))
        snap.blob_sizes = {digest: int(size) for digest, size in rows["sizes"]}
        snap.tags = [CachedTag(repo, name, mid, pushed, pulled)
                     for repo, name, mid, pushed, pulled in rows["tags"]]
        return snap

    def plan(self, upstream: str, now: float | None = None) -> SpacePlan:
        settings = self.upstream(upstream)
        rules = SpaceRules(
            now=self.clock() if now is None else now,
            unused_after=settings.evict_unused_after, budget=settings.size_budget,
            grace=self.grace, pinned=pinned_matcher(upstream, pinned_globs(settings)),
            protected=self.protected)
        return plan_space(self.snapshot(upstream), rules)

    # -- runs ---------------------------------------------------------------------
    def run(self, upstream: str | None = None, dry_run: bool = False,
            trigger: str = "api") -> list[EvictionResult]:
        """Evict in one upstream (None: every one). Dry runs plan only."""
        names = [upstream] if upstream is not None else [
            u.name for u in self.settings.upstreams]
        for name in names:
            self.upstream(name)  # unknown names fail before anything runs
        return [self._run_one(name, dry_run, trigger) for name in names]

    def run_if_due(self, upstream: str, due_after: float) -> EvictionResult | None:
        """The scheduler's call: run unless a real run started after ``due_after``
        (checked under the upstream's lock: one run per firing across instances)."""
        try:
            with acting_as(Actor("system", "scheduler")):
                result = self._run_one(upstream, False, "schedule", due_after)
        except EvictionRunning:
            return None
        return result if result.run_id else None

    def _run_one(self, upstream: str, dry_run: bool, trigger: str,
                 due_after: float | None = None) -> EvictionResult:
        lock = f"mirror-evict:{upstream}"[:64]
        holder = f"{os.uname().nodename}:{os.getpid()}:{time.time()}"
        policy = policy_name(upstream)
        started_by = current_actor().label
        if not dry_run and not self.db.try_lock(lock, holder, ttl=LOCK_TTL):
            metrics.MIRROR_EVICTION_RUNS.labels("busy").inc()
            raise EvictionRunning(f"eviction of {upstream} is already running")
        try:
            if due_after is not None:
                last = rq.last_started(self.db, policy)
                if last is not None and last >= due_after:
                    return EvictionResult(0, upstream, dry_run, SpacePlan(upstream))
            run_id = rq.start_run(self.db, policy, dry_run, trigger, started_by)
            result = EvictionResult(run_id, upstream, dry_run, SpacePlan(upstream))
            try:
                with acting_as(Actor("system", policy)):
                    result.plan = self.plan(upstream)
                    if not dry_run:
                        self._execute(result, lambda: self.db.try_lock(lock, holder, LOCK_TTL))
            except Exception as exc:
                self._finish(result, "failed", str(exc))
                metrics.MIRROR_EVICTION_RUNS.labels("error").inc()
                raise
            self._finish(result, "done")
            metrics.MIRROR_EVICTION_RUNS.labels("dry_run" if dry_run else "success").inc()
            if not dry_run:
                metrics.MIRROR_EVICTED.labels(upstream, "tag").inc(_count(result.deleted, "tag"))
                metrics.MIRROR_EVICTED.labels(upstream, "manifest").inc(
                    _count(result.deleted, "manifest"))
                if not result.skipped:  # the plan's figure holds only if all of it went
                    metrics.MIRROR_EVICTED_BYTES.labels(upstream).inc(result.plan.bytes_freed)
                log.info("mirror eviction: %s", result.summary())
            return result
        finally:
            if not dry_run:
                self.db.unlock(lock, holder)

    def _finish(self, result: EvictionResult, status: str, error: str | None = None) -> None:
        done = result.plan.deletions if result.dry_run else result.deleted
        rq.finish_run(self.db, result.run_id, status, _count(done, "tag"),
                      _count(done, "manifest"), len(result.skipped), error)

    def _execute(self, result: EvictionResult, renew: Callable[[], bool]) -> None:
        actor = current_actor().label
        cutoff = self.clock() - self.grace
        run_id = result.run_id

        def delete_tag(conn: Any, d: Deletion) -> bool:
            return rq.delete_tag_if_unchanged(
                self.db, conn, run_id, d.repository, d.tag or "", d.manifest_id, d.pushed_at,
                d.last_pulled_at, d.rule, actor, d.digest, self._hook(d, d.tag or ""))

        def delete_manifest(conn: Any, d: Deletion) -> bool:
            return rq.delete_manifest_if_untagged(
                self.db, conn, run_id, d.repository, d.manifest_id, d.digest, cutoff, d.rule,
                actor, self._hook(d, d.digest))

        # Tags first; manifests in rounds (an index before its children, a subject
        # before its referrers), as retention executes its plans.
        tags = [d for d in result.plan.deletions if d.kind == "tag"]
        done, skipped = delete_in_batches(self.db, tags, delete_tag, renew)
        result.deleted += done
        result.skipped += skipped
        pending = [d for d in result.plan.deletions if d.kind == "manifest"]
        while pending:
            done, left = delete_in_batches(self.db, pending, delete_manifest, renew)
            result.deleted += done
            if not done:
                result.skipped += left
                break
            pending = left

    def _hook(self, deletion: Deletion, reference: str) -> Callable[[Any], None]:
        hook = self.on_delete

        def after_delete(conn: Any) -> None:
            sq.forget_reference(conn, deletion.repository, reference)
            if hook is not None:
                hook(conn, deletion)

        return after_delete


def _count(deletions: list[Deletion], kind: str) -> int:
    return sum(1 for d in deletions if d.kind == kind)
