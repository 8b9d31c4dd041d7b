"""Management of the pull-through cache: what the API, the UI and the CLI show and do.

Upstreams as the configuration declares them (never their credentials or keys), with
their health (mirror_upstreams: last success, last error, rate limit), what their cache
holds (repositories, bytes), the last eviction and pre-fetch runs; a mirrored
repository's tags with their cache state; and the two actions, eviction and pre-fetch.

Cache state of a reference, from its freshness row (mirror_tags):
``fresh``: upstream confirmed it less than ``tag_ttl`` ago (a pull will not ask);
``stale``: checked longer ago, or never (the next pull revalidates it with one HEAD);
``negative``: upstream said 404 less than ``negative_ttl`` ago (a pull answers 404
without asking).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ociregistry.metadata import mirror_queries as mq
from ociregistry.metadata import mirror_space_queries as sq
from ociregistry.metadata import retention_queries as rq
from ociregistry.metadata.store import MetadataStore
from ociregistry.mirror.eviction import EvictionService, UpstreamNotFound, policy_name
from ociregistry.mirror.prefetch import PrefetchService
from ociregistry.mirror.settings import MirrorSettings, UpstreamSettings

ABANDONED_AFTER = 900.0  # a "running" pre-fetch silent this long died with its process


def cache_state(settings: UpstreamSettings, digest: str | None, checked_at: float | None,
                now: float) -> str:
    if checked_at is None:
        return "stale"
    if digest is None:
        return "negative" if now - checked_at < settings.negative_ttl else "stale"
    return "fresh" if now - checked_at < settings.tag_ttl else "stale"


@dataclass
class MirroredRepository:
    name: str  # local: <upstream>/<upstream repository>
    upstream: UpstreamSettings
    upstream_repository: str


class MirrorManager:
    def __init__(self, store: MetadataStore, settings: MirrorSettings,
                 eviction: EvictionService, prefetch: PrefetchService,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = store
        self.settings = settings
        self.eviction = eviction
        self.prefetch = prefetch
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self.settings.upstreams)

    def upstream(self, name: str) -> UpstreamSettings:
        return self.eviction.upstream(name)  # UpstreamNotFound

    def mirrored(self, repository: str) -> MirroredRepository | None:
        """The upstream a local repository name belongs to, if any."""
        first, sep, rest = repository.partition("/")
        found = self.settings.by_name(first) if sep and rest else None
        return None if found is None else MirroredRepository(repository, found, rest)

    # -- upstreams ------------------------------------------------------------------
    def describe(self, upstream: UpstreamSettings, state: mq.UpstreamState | None = None,
                 with_usage: bool = True) -> dict[str, Any]:
        """An upstream as the API shows it: settings without secrets, health, cache."""
        if state is None:
            state = mq.upstream_state(self.db, upstream.name)
        now = self.clock()
        limited = state.rate_limited_until if state else None
        out: dict[str, Any] = {
            "name": upstream.name, "url": upstream.url, "hosts": list(upstream.hosts),
            "default": upstream.default, "docker_hub": upstream.is_docker_hub,
            "authenticated": bool(upstream.username),
            "tag_ttl": upstream.tag_ttl, "max_stale": upstream.max_stale,
            "negative_ttl": upstream.negative_ttl, "allow_push": upstream.allow_push,
            "evict_unused_after": upstream.evict_unused_after,
            "size_budget": upstream.size_budget, "pinned": list(upstream.pinned),
            "prefetch": [p.model_dump() for p in upstream.prefetch],
            "prefetch_schedule": upstream.prefetch_schedule,
            "state": {
                "last_ok_at": state.last_ok_at if state else None,
                "last_error": state.last_error if state else None,
                "last_error_at": state.last_error_at if state else None,
                "rate_limited_until": limited if limited and limited > now else None,
                "ratelimit_remaining": state.ratelimit_remaining if state else None,
            },
        }
        if with_usage:
            out["cache"] = sq.usage(self.db, upstream.name)
            evictions = rq.runs(self.db, policy_name(upstream.name), 1)
            out["last_eviction"] = evictions[0] if evictions else None
            syncs = self.sync_runs(upstream.name, 1)
            out["last_sync"] = syncs[0] if syncs else None
        return out

    def upstreams(self) -> list[dict[str, Any]]:
        states = mq.all_upstream_states(self.db)
        return [self.describe(u, states.get(u.name) or _no_state(u.name))
                for u in self.settings.upstreams]

    # -- cached content -----------------------------------------------------------
    def repositories(self, upstream: str, limit: int,
                     after: str | None = None) -> list[dict[str, Any]]:
        settings = self.upstream(upstream)
        rows = sq.cached_repositories(self.db, settings.name, limit, after)
        for row in rows:
            row["upstream_repository"] = row["name"][len(settings.name) + 1:]
        return rows

    def repository(self, repository: str, limit: int = 1000) -> dict[str, Any] | None:
        """A mirrored repository's tags with their cache state, and the references
        upstream answered 404 for (negative cache); None: not a mirrored repository."""
        mirrored = self.mirrored(repository)
        if mirrored is None:
            return None
        settings = mirrored.upstream
        now = self.clock()
        checks = dict(mq.repository_checks(self.db, repository))
        tags = sq.repository_tags(self.db, repository, limit) or []
        for tag in tags:
            check = checks.get(tag["name"])
            tag["last_checked_at"] = check.checked_at if check else None
            tag["upstream_digest"] = check.digest if check else None
            tag["state"] = cache_state(settings, check.digest if check else None,
                                       check.checked_at if check else None, now)
            if check is not None and check.digest is None:
                tag["state"] = "stale"  # here, yet upstream said 404: served until max_stale
        names = {t["name"] for t in tags}
        negative = [{"reference": ref, "last_checked_at": f.checked_at,
                     "state": cache_state(settings, None, f.checked_at, now)}
                    for ref, f in checks.items() if f.digest is None and ref not in names]
        return {"repository": repository, "upstream": settings.name,
                "upstream_repository": mirrored.upstream_repository,
                "last_checked_at": max((f.checked_at for f in checks.values()), default=None),
                "tags": tags, "negative": negative[:limit]}

    # -- actions -----------------------------------------------------------------
    def evict(self, upstream: str, dry_run: bool, trigger: str = "api") -> Any:
        self.upstream(upstream)
        return self.eviction.run(upstream, dry_run=dry_run, trigger=trigger)[0]

    def start_sync(self, upstream: str, dry_run: bool = False, trigger: str = "api") -> int:
        self.upstream(upstream)
        return self.prefetch.start(upstream, dry_run, trigger)

    def sync_runs(self, upstream: str | None, limit: int = 20) -> list[dict[str, Any]]:
        return [self._liveness(r) for r in self.prefetch.runs(upstream, limit)]

    def sync_run(self, run_id: int) -> dict[str, Any] | None:
        record = self.prefetch.run_record(run_id)
        return None if record is None else self._liveness(record)

    def _liveness(self, record: dict[str, Any]) -> dict[str, Any]:
        if record["status"] == "running" and self.clock() - record["updated_at"] > \
                ABANDONED_AFTER:
            record["status"] = "abandoned"
        return record


def _no_state(name: str) -> mq.UpstreamState:
    return mq.UpstreamState(name, None, None, None, None, None)


__all__ = ["MirrorManager", "UpstreamNotFound", "cache_state"]
