"""/api/v1/mirror: the pull-through cache's upstreams, their state and cached content,
eviction (dry or real) and pre-fetch runs. Admins only.

HTTP only: the views call mirror/manage.py (the service the UI and CLI use).
Upstream credentials, keys and certificates are never part of an answer.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app

from ociregistry.mirror.eviction import EvictionRunning, UpstreamNotFound
from ociregistry.mirror.manage import MirrorManager
from ociregistry.mirror.settings import UPSTREAM_NAME
from ociregistry.web.api.blueprint import REPOSITORY_NAME, operation, query, schema
from ociregistry.web.api.problems import Problem

_TIME = {"type": ["number", "null"], "description": "Unix time (seconds)"}
_RUN_ID = {"type": "string", "pattern": "^[0-9]{1,18}$"}
UPSTREAM_PATH = {"name": "upstream", "in": "path", "required": True,
                 "description": "The upstream's name (its local path prefix).",
                 "schema": {"type": "string", "maxLength": 64, "pattern": UPSTREAM_NAME}}
UPSTREAM = schema("MirrorUpstream", {
    "type": "object", "required": ["name", "url", "hosts", "default", "tag_ttl", "state"],
    "properties": {
        "name": {"type": "string"}, "url": {"type": "string",
                                            "description": "never with credentials"},
        "hosts": {"type": "array", "items": {"type": "string"}},
        "default": {"type": "boolean"}, "docker_hub": {"type": "boolean"},
        "authenticated": {"type": "boolean",
                          "description": "credentials are configured (never shown)"},
        "tag_ttl": {"type": "number"}, "max_stale": {"type": "number"},
        "negative_ttl": {"type": "number"}, "allow_push": {"type": "boolean"},
        "evict_unused_after": {"type": "number"},
        "size_budget": {"type": ["integer", "null"]},
        "pinned": {"type": "array", "items": {"type": "string"}},
        "prefetch": {"type": "array", "items": {"type": "object", "properties": {
            "repository": {"type": "string"}, "tags": {"type": "string"}}}},
        "prefetch_schedule": {"type": "string"},
        "state": {"type": "object", "properties": {
            "last_ok_at": _TIME, "last_error": {"type": ["string", "null"]},
            "last_error_at": _TIME,
            "rate_limited_until": {**_TIME, "description": "after a 429: no request "
                                   "upstream before this time"},
            "ratelimit_remaining": {"type": ["integer", "null"],
                                    "description": "the last RateLimit-Remaining seen"}}},
        "cache": {"type": "object", "properties": {
            "repositories": {"type": "integer"}, "tags": {"type": "integer"},
            "manifests": {"type": "integer"},
            "bytes": {"type": "integer", "description": "distinct blobs plus manifests"}}},
        "last_eviction": {"type": ["object", "null"]},
        "last_sync": {"type": ["object", "null"]},
    },
})
SYNC_RUN = schema("MirrorSyncRun", {
    "type": "object", "required": ["id", "upstream", "status"],
    "properties": {
        "id": {"type": "integer"}, "upstream": {"type": "string"},
        "dry_run": {"type": "boolean"}, "trigger": {"type": "string"},
        "started_by": {"type": "string"},
        "status": {"type": "string", "enum": ["running", "done", "partial", "failed",
                                              "abandoned"],
                   "description": "partial: some tags failed; abandoned: its process died"},
        "started_at": {"type": "number"}, "updated_at": {"type": "number"},
        "finished_at": _TIME, "tags_total": {"type": "integer"},
        "tags_done": {"type": "integer"}, "tags_failed": {"type": "integer"},
        "bytes": {"type": "integer"}, "error": {"type": ["string", "null"]},
        "problems": {"type": "array", "items": {"type": "object"},
                     "description": "the last 50 failures (repository, tag, error)"},
    },
})
_TAG_STATE = {"type": "string", "enum": ["fresh", "stale", "negative"]}
MIRRORED_REPOSITORY = schema("MirroredRepository", {
    "type": "object", "required": ["repository", "upstream", "upstream_repository", "tags"],
    "properties": {
        "repository": {"type": "string"}, "upstream": {"type": "string"},
        "upstream_repository": {"type": "string"}, "last_checked_at": _TIME,
        "tags": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "digest": {"type": "string"},
            "cached_at": {"type": "number"}, "last_pulled_at": _TIME,
            "last_checked_at": _TIME, "upstream_digest": {"type": ["string", "null"]},
            "state": _TAG_STATE}}},
        "negative": {"type": "array", "description": "references upstream answered 404",
                     "items": {"type": "object", "properties": {
                         "reference": {"type": "string"}, "last_checked_at": _TIME,
                         "state": _TAG_STATE}}},
    },
})


def _manager() -> MirrorManager:
    return current_app.extensions["ociregistry"].mirror_manage


def _upstream(name: str) -> Any:
    try:
        return _manager().upstream(name)
    except UpstreamNotFound as exc:
        raise Problem("not_found", f"no upstream {name}") from exc


@operation("/mirror/upstreams", "GET", summary="Mirrored upstreams and their state",
           tag="mirror", permission="admin",
           response={"type": "object", "required": ["items"],
                     "properties": {"items": {"type": "array", "items": UPSTREAM}}},
           description="Each upstream of the configuration file (mirror.upstreams), without "
                       "its credentials: health (last success, last error, rate limit), "
                       "what its cache holds, its last eviction and pre-fetch runs.")
def list_upstreams() -> dict[str, Any]:
    return {"items": _manager().upstreams()}


@operation("/mirror/upstreams/{upstream}", "GET", summary="One upstream", tag="mirror",
           permission="admin", response=UPSTREAM, parameters=(UPSTREAM_PATH,))
def get_upstream(upstream: str) -> dict[str, Any]:
    return _manager().describe(_upstream(upstream))


@operation("/mirror/upstreams/{upstream}/repositories", "GET",
           summary="Repositories cached from an upstream", tag="mirror", permission="admin",
           response={"type": "object", "required": ["items", "next"], "properties": {
               "items": {"type": "array", "items": {"type": "object", "properties": {
                   "name": {"type": "string"}, "upstream_repository": {"type": "string"},
                   "tags": {"type": "integer"}, "size": {"type": "integer"},
                   "last_pulled_at": _TIME, "last_checked_at": _TIME}}},
               "next": {"type": ["string", "null"],
                        "description": "pass as `last` for the next page"}}},
           parameters=(UPSTREAM_PATH,
                       query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                       "default": 100}),
                       query("last", {"type": "string", "maxLength": 512},
                             "Repositories after this local name.")))
def upstream_repositories(upstream: str, limit: int, last: str | None) -> dict[str, Any]:
    items = _manager().repositories(_upstream(upstream).name, limit, last)
    return {"items": items, "next": items[-1]["name"] if len(items) == limit else None}


@operation("/mirror/repositories/{name}", "GET",
           summary="A mirrored repository: its tags and their cache state", tag="mirror",
           permission="admin", response=MIRRORED_REPOSITORY, parameters=(REPOSITORY_NAME,),
           description="`fresh`: upstream confirmed the tag within tag_ttl (a pull does not "
                       "ask); `stale`: checked longer ago or never (the next pull revalidates "
                       "with one HEAD); `negative`: upstream answered 404 within negative_ttl. "
                       "404 `not_found` for a name outside every upstream's prefix.")
def mirrored_repository(name: str) -> dict[str, Any]:
    found = _manager().repository(name)
    if found is None:
        raise Problem("not_found", f"{name} is not under a mirrored upstream's prefix")
    return found


@operation("/mirror/upstreams/{upstream}/evict", "POST",
           summary="Evict now (or plan it: dry run)", tag="mirror", permission="admin",
           response={"type": "object", "required": ["run_id", "upstream", "dry_run"],
                     "properties": {
                         "run_id": {"type": "integer"}, "upstream": {"type": "string"},
                         "dry_run": {"type": "boolean"}, "tags": {"type": "integer"},
                         "manifests": {"type": "integer"}, "skipped": {"type": "integer"},
                         "bytes_before": {"type": "integer"},
                         "bytes_after": {"type": "integer"},
                         "bytes_freed": {"type": "integer"},
                         "deletions": {"type": "array", "items": {"type": "object"}},
                         "truncated": {"type": "boolean"}}},
           parameters=(UPSTREAM_PATH,
                       query("dry_run", {"type": "boolean", "default": True},
                             "plan only (the default)"),
                       query("limit", {"type": "integer", "minimum": 0, "maximum": 100000,
                                       "default": 1000}, "deletions listed")),
           description="Synchronous. Unused tags (evict_unused_after) and, beyond the "
                       "size_budget, the least recently pulled go; pinned and immutable tags "
                       "never. Deleted content is freed by the next GC run. The run is "
                       "audited as retention policy `mirror:<upstream>` "
                       "(/api/v1/retention/runs). 409 `conflict` while a real eviction of "
                       "the upstream runs anywhere.")
def evict(upstream: str, dry_run: bool, limit: int) -> dict[str, Any]:
    name = _upstream(upstream).name
    try:
        result = _manager().evict(name, dry_run=dry_run)
    except EvictionRunning as exc:
        raise Problem("conflict", str(exc)) from exc
    items = result.plan.deletions if dry_run else result.deleted
    return {**result.summary(), "deletions": [d.as_dict() for d in items[:limit]],
            "truncated": len(items) > limit}


@operation("/mirror/upstreams/{upstream}/sync", "POST", summary="Start a pre-fetch run",
           tag="mirror", permission="admin", status=202,
           response={"type": "object", "required": ["run_id", "upstream", "dry_run"],
                     "properties": {"run_id": {"type": "integer"},
                                    "upstream": {"type": "string"},
                                    "dry_run": {"type": "boolean"},
                                    "href": {"type": "string"}}},
           parameters=(UPSTREAM_PATH,
                       query("dry_run", {"type": "boolean", "default": False},
                             "list what would be pulled, pull nothing")),
           description="Pulls the upstream's `prefetch` tags through the cache in the "
                       "background of this instance; follow it at "
                       "/api/v1/mirror/syncs/{run_id}. 409 `not_configured` when the upstream "
                       "has no prefetch list or this instance has no mirror fill path.")
def start_sync(upstream: str, dry_run: bool) -> dict[str, Any]:
    settings = _upstream(upstream)
    manager = _manager()
    if not settings.prefetch:
        raise Problem("not_configured", f"upstream {upstream} has no prefetch list")
    if manager.prefetch.source is None:
        raise Problem("not_configured", "this instance has no mirror fill path")
    run_id = manager.start_sync(settings.name, dry_run)
    return {"run_id": run_id, "upstream": settings.name, "dry_run": dry_run,
            "href": f"/api/v1/mirror/syncs/{run_id}"}


@operation("/mirror/upstreams/{upstream}/syncs", "GET", summary="Recent pre-fetch runs",
           tag="mirror", permission="admin",
           response={"type": "object", "required": ["items"],
                     "properties": {"items": {"type": "array", "items": SYNC_RUN}}},
           parameters=(UPSTREAM_PATH,
                       query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                       "default": 20})))
def list_syncs(upstream: str, limit: int) -> dict[str, Any]:
    return {"items": _manager().sync_runs(_upstream(upstream).name, limit)}


@operation("/mirror/syncs/{run_id}", "GET", summary="One pre-fetch run and its progress",
           tag="mirror", permission="admin", response=SYNC_RUN,
           parameters=({"name": "run_id", "in": "path", "required": True,
                        "schema": _RUN_ID},))
def get_sync(run_id: str) -> dict[str, Any]:
    found = _manager().sync_run(int(run_id)) if re.fullmatch(r"[0-9]{1,18}", run_id) else None
    if found is None:
        raise Problem("not_found", f"no pre-fetch run {run_id}")
    return found
