"""ociregistry retention run [--dry-run] [--policy NAME] | policies | runs (local data)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ociregistry.config import Settings


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None],
             settings: Callable[[argparse.Namespace], Settings]) -> None:
    retention = sub.add_parser("retention", help="retention policies (docs/lifecycle.md)")
    r_sub = retention.add_subparsers(dest="retention_command", required=True)

    run = r_sub.add_parser("run", help="run the retention policies now")
    common(run)
    run.add_argument("--dry-run", action="store_true",
                     help="list what would be deleted (and the rule that decided), delete nothing")
    run.add_argument("--policy", metavar="NAME",
                     help="this policy only (label-expiry: the label expiry); default: every "
                          "enabled policy, then label expiry")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(func=lambda args: cmd_run(args, settings(args)))

    policies = r_sub.add_parser("policies", help="list the policies (file and API)")
    common(policies)
    policies.set_defaults(func=lambda args: cmd_policies(settings(args)))


def _service(settings: Settings) -> Any:
    from ociregistry.runtime import build_runtime

    return build_runtime(settings, migrate=True).retention


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from ociregistry.core.actor import Actor, acting_as
    from ociregistry.lifecycle.retention import PolicyNotFound, RetentionRunning

    service = _service(settings)
    try:
        with acting_as(Actor("system", "cli")):
            results = service.run(args.policy, dry_run=args.dry_run, trigger="cli")
    except PolicyNotFound as exc:
        print(f"error: no retention policy {exc}", file=sys.stderr)
        return 2
    except RetentionRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps([{**r.summary(), "deletions": [
            d.as_dict() for d in (r.planned if r.dry_run else r.deleted)]}
            for r in results], indent=2))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for result in results:
        items = result.planned if result.dry_run else result.deleted
        for d in items:
            ref = f"{d.repository}:{d.tag}" if d.kind == "tag" else f"{d.repository}@{d.digest}"
            print(f"{verb} {d.kind} {ref}  ({d.rule})")
        s = result.summary()
        print(f"policy {s['policy']}: {verb} {s['tags']} tags, {s['manifests']} manifests"
              + (f", skipped {s['skipped']} changed since the plan" if s["skipped"] else "")
              + f" (run {s['run_id']})")
    return 0


def cmd_policies(settings: Settings) -> int:
    for entry in _service(settings).policies():
        policy = entry.policy
        print(f"{policy.name}\t{entry.source}\t{'enabled' if policy.enabled else 'disabled'}"
              f"\t{policy.schedule or 'on demand'}\t{','.join(policy.repositories)}")
    return 0
