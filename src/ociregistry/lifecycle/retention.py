"""Retention runs: plan from snapshots of the index, then delete exactly the plan.

A dry run returns the plan (every tag and manifest that would go, with the rule
that decided) and records a run row. A real run makes the same plan and deletes
its entries in write transactions of up to ``BATCH``, each re-checked there (the
tag still names the same manifest, was not pushed again nor pulled since; the
manifest is still untagged, no index or subject that stays holds it, it is out
of the GC grace period), with one audit row (retention_deletions) each in the
same transaction. What changed since the plan is skipped and counted, never
deleted.

One real run of a policy at a time across instances: the lock row
``retention:<policy>``. Runs act as ``Actor("system", "retention:<policy>")``.
Repositories are planned 200 at a time (memory stays bounded on large registries).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ociregistry import metrics
from ociregistry.config import RetentionSettings
from ociregistry.core.actor import Actor, acting_as, current_actor
from ociregistry.lifecycle import plan as p
from ociregistry.lifecycle.durations import try_duration
from ociregistry.lifecycle.policy import RetentionPolicy
from ociregistry.metadata import retention_queries as q
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.base import BlobStorage

log = logging.getLogger("ociregistry.retention")
CHUNK = 200
LOCK_TTL = 300.0
MAX_CONFIG = 1 << 20  # config blobs read for labels: larger ones are not images' configs
# Config blobs read for expiry labels per run: the first run on a large registry reads
# them over several runs rather than all at once (each is read once, ever).
SCAN_PER_RUN = 20000
# Deletions per write transaction: each is re-checked inside it; a batch commits (with
# its audit rows and hook writes) or rolls back whole. Bounds the commits of a large run.
BATCH = 100


class PolicyNotFound(Exception):
    pass


class PolicyReadOnly(Exception):
    """A policy of the configuration file: changed there, not through the API."""


class RetentionRunning(Exception):
    pass


@dataclass
class PolicyEntry:
    policy: RetentionPolicy
    source: str  # "config" or "api"
    updated_at: float | None = None
    updated_by: str | None = None


@dataclass
class RunResult:
    run_id: int
    policy: str
    dry_run: bool
    planned: list[p.Deletion] = field(default_factory=list)
    deleted: list[p.Deletion] = field(default_factory=list)
    skipped: list[p.Deletion] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        kinds = [d.kind for d in (self.planned if self.dry_run else self.deleted)]
        return {"run_id": self.run_id, "policy": self.policy, "dry_run": self.dry_run,
                "tags": kinds.count("tag"), "manifests": kinds.count("manifest"),
                "skipped": len(self.skipped)}


def expiry_policy() -> RetentionPolicy:
    """Label expiry, shown and run like a policy (it keeps what has not expired)."""
    return RetentionPolicy(name=p.LABEL_EXPIRY, keep=[p.KeepRule(always=True)],
                           description="removes tags whose image's expires-after label "
                                       "(ociregistry.expires-after, quay.expires-after) is over")


class RetentionService:
    def __init__(self, store: MetadataStore, storage: BlobStorage, settings: RetentionSettings,
                 grace: float, protected: Callable[[str, str], bool] | None = None) -> None:
        self.db = store
        self.storage = storage
        self.settings = settings
        self.grace = grace
        # (repository, tag) -> True for an immutable tag: never deleted. The lead
        # connects this to the immutable-tag rules; default: nothing is protected.
        self.protected = protected or (lambda _repository, _tag: False)
        # Called inside each deletion's write transaction, after its audit row, with
        # (connection, deletion): where an event (outbox row) belongs. None: nothing.
        self.on_delete: Callable[[Any, p.Deletion], None] | None = None

    # -- policies ---------------------------------------------------------------
    def policies(self) -> list[PolicyEntry]:
        entries = [PolicyEntry(policy, "config") for policy in self.settings.policies]
        for name, definition, updated_at, updated_by in q.stored_policies(self.db):
            if not any(e.policy.name == name for e in entries):
                entries.append(PolicyEntry(RetentionPolicy.model_validate(definition), "api",
                                           updated_at, updated_by))
        return entries

    def policy(self, name: str) -> PolicyEntry:
        if name == p.LABEL_EXPIRY and self.settings.label_expiry:
            return PolicyEntry(expiry_policy(), "builtin")
        for entry in self.policies():
            if entry.policy.name == name:
                return entry
        raise PolicyNotFound(name)

    def put_policy(self, policy: RetentionPolicy, who: str) -> bool:
        """Create or replace a run-time policy; True when created."""
        if policy.name == p.LABEL_EXPIRY or any(
                c.name == policy.name for c in self.settings.policies):
            raise PolicyReadOnly(policy.name)
        return q.put_policy(self.db, policy.name, policy.model_dump(), who)

    def delete_policy(self, name: str) -> None:
        if name == p.LABEL_EXPIRY or any(c.name == name for c in self.settings.policies):
            raise PolicyReadOnly(name)
        if not q.delete_policy(self.db, name):
            raise PolicyNotFound(name)

    def runnable(self, name: str | None) -> list[RetentionPolicy]:
        """The policies a run of ``name`` (None: every enabled one) evaluates, in order."""
        if name is not None:
            return [self.policy(name).policy]
        found = [e.policy for e in self.policies() if e.policy.enabled]
        return found + ([expiry_policy()] if self.settings.label_expiry else [])

    # -- planning ---------------------------------------------------------------
    def plan(self, policy: RetentionPolicy, now: float | None = None,
             gone: set[tuple[str, str | None, int]] | None = None) -> list[p.Deletion]:
        """Every deletion ``policy`` would make now. ``gone``: (repository, tag, manifest
        id) already planned by an earlier policy of the same run, treated as deleted."""
        ctx = p.Context(now=time.time() if now is None else now, grace=self.grace,
                        protected=self.protected)
        expiry = policy.name == p.LABEL_EXPIRY
        repos = [(rid, name) for rid, name in q.repositories(self.db)
                 if expiry or policy.selects_repository(name)]
        out: list[p.Deletion] = []
        budget = [SCAN_PER_RUN]  # per plan (the service is shared by threads)
        for start in range(0, len(repos), CHUNK):
            chunk = repos[start:start + CHUNK]
            ids = [rid for rid, _ in chunk]
            if expiry:
                self._scan_config_labels(ids, budget)
            for snap in self._snapshots(chunk, expiry, gone or set()):
                out += (p.plan_label_expiry(snap, ctx) if expiry
                        else p.plan_policy(policy, snap, ctx))
        return out

    def _snapshots(self, chunk: list[tuple[int, str]], expiry: bool,
                   gone: set[tuple[str, str | None, int]]) -> Iterable[p.RepositorySnapshot]:
        rows = q.snapshot_rows(self.db, [rid for rid, _ in chunk], expiry)
        snaps = {rid: p.RepositorySnapshot(name) for rid, name in chunk}
        gone_ids = {mid for _repo, tag, mid in gone if tag is None}
        by_id: dict[int, p.ManifestInfo] = {}
        for mid, rid, digest, created, pulled, subject, art in rows["manifests"]:
            if mid in gone_ids:
                continue
            by_id[mid] = snaps[rid].manifests[mid] = p.ManifestInfo(
                mid, digest, created, pulled, subject, art)
        children: dict[int, list[str]] = {}
        for mid, child in rows["children"]:
            children.setdefault(mid, []).append(child)
        for mid, digests in children.items():
            if mid in by_id:
                by_id[mid].children = tuple(digests)
        for mid, seconds in rows["labels"]:
            if mid in by_id:
                by_id[mid].expires_after = seconds
        # An annotation wins over a config label; ociregistry's key over quay's.
        for mid, _key, value in sorted(rows["annotations"], key=lambda r: r[1], reverse=True):
            seconds = try_duration(value)
            if mid in by_id and seconds is not None:
                by_id[mid].expires_after = seconds
        for rid, name, mid, pushed, pulled in rows["tags"]:
            snap = snaps[rid]
            if (snap.name, name, mid) not in gone and mid in by_id:
                snap.tags.append(p.TagInfo(name, mid, pushed, pulled))
        return [s for s in snaps.values() if s.manifests]

    def _scan_config_labels(self, repo_ids: list[int], budget: list[int]) -> None:
        """Read, once per manifest, the expiry label of image configurations."""
        found: dict[int, float | None] = {}
        if budget[0] <= 0:
            return
        for mid, payload in q.unscanned_images(self.db, repo_ids, budget[0]):
            found[mid] = self._config_expiry(payload)
        budget[0] -= len(found)
        q.record_label_expiries(self.db, found)

    def _config_expiry(self, payload: bytes) -> float | None:
        try:
            config = json.loads(payload).get("config") or {}
            digest, size = config.get("digest"), int(config.get("size", 0))
            if not isinstance(digest, str) or not 0 < size <= MAX_CONFIG:
                return None
            data = b"".join(self.storage.open_blob(digest))
            labels = (json.loads(data).get("config") or {}).get("Labels") or {}
        except Exception:  # a missing or odd config has no expiry, and is not re-read
            return None
        for key in q.EXPIRY_KEYS:
            seconds = try_duration(labels.get(key))
            if seconds is not None:
                return seconds
        return None

    # -- runs -------------------------------------------------------------------
    def run(self, name: str | None = None, dry_run: bool = False,
            trigger: str = "api") -> list[RunResult]:
        """Run one policy (or every enabled one, then label expiry). Dry runs plan only."""
        started_by = current_actor().label
        results = []
        gone: set[tuple[str, str | None, int]] = set()
        for policy in self.runnable(name):
            result = self._run_one(policy, dry_run, trigger, started_by, gone)
            done = result.planned if dry_run else result.deleted
            gone |= {(d.repository, d.tag, d.manifest_id) for d in done}
            results.append(result)
        return results

    def _run_one(self, policy: RetentionPolicy, dry_run: bool, trigger: str,
                 started_by: str, gone: set[tuple[str, str | None, int]],
                 due_after: float | None = None) -> RunResult:
        lock = f"retention:{policy.name}"
        holder = f"{os.uname().nodename}:{os.getpid()}:{time.time()}"
        if not dry_run and not self.db.try_lock(lock, holder, ttl=LOCK_TTL):
            metrics.RETENTION_RUNS.labels("busy").inc()
            raise RetentionRunning(f"retention policy {policy.name} is already running")
        try:
            if due_after is not None:
                last = q.last_started(self.db, policy.name)
                if last is not None and last >= due_after:
                    return RunResult(0, policy.name, dry_run)  # another instance ran it
            run_id = q.start_run(self.db, policy.name, dry_run, trigger, started_by)
            result = RunResult(run_id, policy.name, dry_run)
            try:
                with acting_as(Actor("system", f"retention:{policy.name}")):
                    result.planned = self.plan(policy, gone=gone)
                    if not dry_run:
                        self._execute(result, lambda: self.db.try_lock(lock, holder, LOCK_TTL))
            except Exception as exc:
                q.finish_run(self.db, run_id, "failed", _count(result.deleted, "tag"),
                             _count(result.deleted, "manifest"), len(result.skipped), str(exc))
                metrics.RETENTION_RUNS.labels("error").inc()
                raise
            done = result.planned if dry_run else result.deleted
            q.finish_run(self.db, run_id, "done", _count(done, "tag"),
                         _count(done, "manifest"), len(result.skipped))
            metrics.RETENTION_RUNS.labels("dry_run" if dry_run else "success").inc()
            return result
        finally:
            if not dry_run:
                self.db.unlock(lock, holder)

    def _execute(self, result: RunResult, renew: Callable[[], bool]) -> None:
        actor = current_actor().label
        cutoff = time.time() - self.grace
        run_id = result.run_id

        def delete_tag(conn: Any, d: p.Deletion) -> bool:
            return q.delete_tag_if_unchanged(
                self.db, conn, run_id, d.repository, d.tag or "", d.manifest_id, d.pushed_at,
                d.last_pulled_at, d.rule, actor, d.digest, self._hook(d))

        def delete_manifest(conn: Any, d: p.Deletion) -> bool:
            return q.delete_manifest_if_untagged(self.db, conn, run_id, d.repository,
                                                 d.manifest_id, d.digest, cutoff, d.rule,
                                                 actor, self._hook(d))

        # Tags first (a manifest may go only once its tags are gone); manifests in
        # rounds, since an index must go before its children, a subject before its
        # referrers (each re-checked as GC does).
        tags = [d for d in result.planned if d.kind == "tag"]
        done, skipped = delete_in_batches(self.db, tags, delete_tag, renew)
        result.deleted += done
        result.skipped += skipped
        metrics.RETENTION_DELETED.labels("tag").inc(len(done))
        pending = [d for d in result.planned if d.kind == "manifest"]
        while pending:
            done, left = delete_in_batches(self.db, pending, delete_manifest, renew)
            result.deleted += done
            metrics.RETENTION_DELETED.labels("manifest").inc(len(done))
            if not done:
                result.skipped += left
                break
            pending = left


    def _hook(self, deletion: p.Deletion) -> Callable[[Any], None] | None:
        hook = self.on_delete
        return None if hook is None else (lambda conn: hook(conn, deletion))

    # -- history ----------------------------------------------------------------
    def runs(self, policy: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return q.runs(self.db, policy, limit)

    def run_record(self, run_id: int, limit: int = 1000) -> dict[str, Any] | None:
        record = q.run(self.db, run_id)
        if record is not None:
            record["deletions"] = q.deletions(self.db, run_id, limit)
        return record

    def run_if_due(self, policy: RetentionPolicy, due_after: float) -> RunResult | None:
        """The scheduler's call: run unless a run started after ``due_after`` (checked
        under the policy's lock, so one run per cron firing across instances)."""
        try:
            with acting_as(Actor("system", "scheduler")):
                result = self._run_one(policy, False, "schedule", "scheduler", set(),
                                       due_after=due_after)
        except RetentionRunning:
            return None
        return result if result.run_id else None


def _count(deletions: list[p.Deletion], kind: str) -> int:
    return sum(1 for d in deletions if d.kind == kind)


def delete_in_batches(db: MetadataStore, items: list[p.Deletion],
                      delete: Callable[[Any, p.Deletion], bool],
                      renew: Callable[[], bool]) -> tuple[list[p.Deletion], list[p.Deletion]]:
    """(deleted, not deleted). Each batch in one write transaction, its locks taken in
    (repository, digest) order so that two runs never wait on each other in a cycle."""
    deleted: list[p.Deletion] = []
    kept: list[p.Deletion] = []
    renewed = time.monotonic()
    for start in range(0, len(items), BATCH):
        batch = sorted(items[start:start + BATCH], key=lambda d: (d.repository, d.digest))
        gone, stay = [], []
        with db.write() as conn:
            for d in batch:
                (gone if delete(conn, d) else stay).append(d)
        deleted += gone  # committed
        kept += stay
        if time.monotonic() - renewed > 15:
            renew()
            renewed = time.monotonic()
    return deleted, kept
