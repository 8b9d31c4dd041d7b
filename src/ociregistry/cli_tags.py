"""``ociregistry tag history|restore``: a tag's history and restores, on the local index.

Runs as the system actor named ``cli:<login>``: history records who ran it;
immutable rules apply, protected-tag rules (which name users) do not.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from ociregistry.core.actor import Actor, acting_as
from ociregistry.core.errors import RegistryError


def _split(ref: str) -> tuple[str, str]:
    name, sep, tag = ref.rpartition(":")
    if not sep or not name or "/" in tag:
        raise SystemExit(f"error: {ref!r} is not REPOSITORY:TAG")
    return name, tag


def _services(args: argparse.Namespace, settings_of: Callable) -> Any:
    from ociregistry.runtime import build_runtime

    runtime = build_runtime(settings_of(args), migrate=True)
    assert runtime.tags is not None
    return runtime.tags


def _actor() -> Actor:
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return Actor("system", name=f"cli:{login}")


def cmd_restore(args: argparse.Namespace, settings_of: Callable) -> int:
    name, tag = _split(args.ref)
    tags = _services(args, settings_of)
    try:
        with acting_as(_actor()):
            restored = tags.history.restore(name, tag, args.digest)
    except RegistryError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    if not restored.changed:
        print(f"{name}:{tag} already points at {restored.digest}")
    else:
        print(f"restored {name}:{tag} to {restored.digest} (was {restored.previous or 'absent'})")
    return 0


def cmd_history(args: argparse.Namespace, settings_of: Callable) -> int:
    name, tag = _split(args.ref)
    tags = _services(args, settings_of)
    try:
        entries = tags.history.entries(name, tag, args.limit)
        restorable = tags.history.restorable(name, tag)
    except RegistryError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"entries": entries, "restorable": restorable}))
        return 0
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["at"]))
        who = e["actor_name"] or e["actor_kind"]
        change = {"push": f"-> {e['digest']}", "delete": f"{e['previous_digest']} ->",
                  }.get(e["action"], f"{e['previous_digest']} -> {e['digest']}")
        print(f"{when}Z  {e['action']:<8} {who:<20} {change}")
    for r in restorable:
        print(f"restorable: {r['digest']}")
    return 0


def register(sub: Any, common: Callable, settings_of: Callable) -> None:
    tag = sub.add_parser("tag", help="tag history and restores")
    tag_sub = tag.add_subparsers(dest="tag_command", required=True)
    restore = tag_sub.add_parser(
        "restore", help="point a tag at a digest it named within the restore window")
    common(restore)
    restore.add_argument("ref", metavar="REPOSITORY:TAG")
    restore.add_argument("digest", metavar="DIGEST")
    restore.set_defaults(func=lambda a: cmd_restore(a, settings_of))
    history = tag_sub.add_parser("history", help="a tag's changes, newest first")
    common(history)
    history.add_argument("ref", metavar="REPOSITORY:TAG")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(func=lambda a: cmd_history(a, settings_of))
