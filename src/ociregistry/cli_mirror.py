"""ociregistry mirror sync | evict | status: the pull-through cache's upstreams (local data).

``sync`` runs each upstream's pre-fetch list once (with a progress bar), ``evict``
its eviction (unused tags, size budget; ``--dry-run`` lists what would go),
``status`` shows every upstream's state and cache. The mirror's modules are imported
by the commands only: `ociregistry serve` must not load prometheus_client (through
them) before it sets up the metrics directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ociregistry.cli_ops import ProgressPrinter, _human
from ociregistry.config import Settings


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None],
             settings: Callable[[argparse.Namespace], Settings]) -> None:
    mirror = sub.add_parser("mirror", help="pull-through cache: pre-fetch, eviction, state "
                                           "(docs/mirror.md)")
    m_sub = mirror.add_subparsers(dest="mirror_command", required=True)

    sync = m_sub.add_parser("sync", help="pull each upstream's prefetch tags through the "
                                         "cache now")
    common(sync)
    sync.add_argument("--upstream", metavar="NAME", help="this upstream only (default: every "
                                                         "one with a prefetch list)")
    sync.add_argument("--dry-run", action="store_true",
                      help="list the tags that would be pulled, pull nothing")
    sync.add_argument("--json", action="store_true", help="print the results as JSON")
    sync.set_defaults(func=lambda args: cmd_sync(args, settings(args)))

    evict = m_sub.add_parser("evict", help="evict unused and over-budget cached content now")
    common(evict)
    evict.add_argument("--upstream", metavar="NAME", help="this upstream only")
    evict.add_argument("--dry-run", action="store_true",
                       help="list what would be evicted (and why), delete nothing")
    evict.add_argument("--json", action="store_true", help="print the results as JSON")
    evict.set_defaults(func=lambda args: cmd_evict(args, settings(args)))

    status = m_sub.add_parser("status", help="every upstream's state and cache")
    common(status)
    status.add_argument("--json", action="store_true", help="print it as JSON")
    status.set_defaults(func=lambda args: cmd_status(args, settings(args)))


def _manager(settings: Settings) -> Any:
    from ociregistry.runtime import build_runtime

    return build_runtime(settings, migrate=True).mirror_manage


def _upstreams(manager: Any, name: str | None, need_prefetch: bool) -> list[Any] | None:
    if name is not None:
        found = manager.settings.by_name(name)
        if found is None:
            print(f"error: no upstream {name} (mirror.upstreams)", file=sys.stderr)
            return None
        return [found]
    found = [u for u in manager.settings.upstreams if u.prefetch or not need_prefetch]
    if not found:
        print("error: no upstream " + ("has a prefetch list" if need_prefetch
                                       else "is configured (mirror.upstreams)"),
              file=sys.stderr)
        return None
    return found


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from ociregistry.core.actor import Actor, acting_as
    from ociregistry.mirror.prefetch import SyncRunning

    manager = _manager(settings)
    upstreams = _upstreams(manager, args.upstream, need_prefetch=True)
    if upstreams is None:
        return 2
    code = 0
    results = []
    for upstream in upstreams:
        try:
            with acting_as(Actor("system", "cli")):
                result = manager.prefetch.run(upstream.name, dry_run=args.dry_run,
                                              trigger="cli", progress=ProgressPrinter())
        except SyncRunning as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = max(code, 3)
            continue
        except Exception as exc:  # the upstream could not be listed at all, ...
            print(f"error: pre-fetch of {upstream.name} failed: {exc}", file=sys.stderr)
            code = max(code, 1)
            continue
        results.append(result)
        if result.failed:
            code = max(code, 1)
        if args.json:
            continue
        for repository, tag in result.planned:
            if args.dry_run:
                print(f"would pull {upstream.name}/{repository}:{tag}")
        for problem in result.failed:
            ref = f"{problem['repository']}:{problem['tag']}" if problem["tag"] else \
                problem["repository"]
            print(f"failed {upstream.name}/{ref}: {problem['error']}", file=sys.stderr)
        s = result.summary()
        verb = "would pull" if args.dry_run else "pulled"
        print(f"upstream {upstream.name}: {verb} "
              f"{s['tags_total'] if args.dry_run else s['tags_done']} tags"
              + ("" if args.dry_run else f" ({_human(s['bytes'])} fetched)")
              + (f", {s['tags_failed']} failed" if s["tags_failed"] else "")
              + f" (run {s['run_id']})")
    if args.json:
        print(json.dumps([{**r.summary(), "tags": [f"{repo}:{tag}" for repo, tag in r.planned],
                           "failed": r.failed} for r in results], indent=2))
    return code


def cmd_evict(args: argparse.Namespace, settings: Settings) -> int:
    from ociregistry.core.actor import Actor, acting_as
    from ociregistry.mirror.eviction import EvictionRunning

    manager = _manager(settings)
    upstreams = _upstreams(manager, args.upstream, need_prefetch=False)
    if upstreams is None:
        return 2
    try:
        with acting_as(Actor("system", "cli")):
            results = [manager.eviction.run(u.name, dry_run=args.dry_run, trigger="cli")[0]
                       for u in upstreams]
    except EvictionRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps([{**r.summary(), "deletions": [
            d.as_dict() for d in (r.plan.deletions if r.dry_run else r.deleted)]}
            for r in results], indent=2))
        return 0
    verb = "would evict" if args.dry_run else "evicted"
    for result in results:
        for d in result.plan.deletions if result.dry_run else result.deleted:
            ref = f"{d.repository}:{d.tag}" if d.kind == "tag" else f"{d.repository}@{d.digest}"
            print(f"{verb} {d.kind} {ref}  ({d.rule})")
        s = result.summary()
        print(f"upstream {s['upstream']}: {verb} {s['tags']} tags, {s['manifests']} manifests, "
              f"{_human(s['bytes_freed'])} ({_human(s['bytes_before'])} cached before)"
              + (f", skipped {s['skipped']} changed since the plan" if s["skipped"] else "")
              + f" (run {s['run_id']}); `ociregistry gc` frees the blobs")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    manager = _manager(settings)
    upstreams = manager.upstreams()
    if args.json:
        print(json.dumps(upstreams, indent=2))
        return 0
    if not upstreams:
        print("no upstream is configured (mirror.upstreams)")
    for u in upstreams:
        state, cache = u["state"], u["cache"]
        health = f"error: {state['last_error']}" if state["last_error"] and (
            state["last_ok_at"] or 0) < (state["last_error_at"] or 0) else (
            "ok" if state["last_ok_at"] else "not contacted yet")
        print(f"{u['name']}\t{u['url']}\t{health}\t{cache['repositories']} repositories\t"
              f"{_human(cache['bytes'])}")
    return 0
