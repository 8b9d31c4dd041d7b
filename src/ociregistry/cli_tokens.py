"""``ociregistry token create|list|revoke``: robot accounts' access tokens.

They live in the metadata index (the database of ``database.url``), so every
instance sharing it sees a new or revoked token at its next request. The token
is printed once, at creation; only its hash is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a command runs: `serve` must load prometheus_client
    from ociregistry.auth.robots import RobotService, TokenInfo  # after setting it up


def _service(args: argparse.Namespace, settings_of: Callable) -> RobotService:
    from ociregistry.auth.robots import RobotService
    from ociregistry.metadata.store import MetadataStore

    settings = settings_of(args)
    store = MetadataStore(settings.database_url)
    if settings.database.auto_migrate:
        store.create_schema()
    return RobotService(store, settings.auth.robots)


def _when(value: float | None, empty: str = "-") -> str:
    if value is None:
        return empty
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _as_dict(info: TokenInfo, now: float) -> dict[str, Any]:
    return {
        "id": info.id, "name": info.name, "user": info.user,
        "scope": [str(e) for e in info.scope], "description": info.description,
        "created_by": info.created_by, "created_at": info.created_at,
        "expires_at": info.expires_at, "last_used_at": info.last_used_at,
        "revoked_at": info.revoked_at, "state": info.state(now),
    }


def cmd_create(args: argparse.Namespace, settings_of: Callable) -> int:
    from ociregistry.auth.robots import parse_duration, parse_scope

    robots = _service(args, settings_of)
    scope = parse_scope(args.scope)
    expires: float | None | str = "default" if args.expires is None else \
        parse_duration(args.expires)
    info, token = robots.create(args.name, scope, expires, args.description or "",
                                created_by=f"cli:{getpass.getuser()}")
    if args.json:
        print(json.dumps({**_as_dict(info, time.time()), "token": token}))
        return 0
    print(f"robot token {info.id} created for {info.user} "
          f"(scope {info.scope_text}; expires {_when(info.expires_at, 'never')})")
    print("Log in with this user name and token; it is shown only now:")
    print(f"  user:  {info.user}")
    print(f"  token: {token}")
    return 0


def cmd_list(args: argparse.Namespace, settings_of: Callable) -> int:
    now = time.time()
    tokens = _service(args, settings_of).list(include_revoked=args.all)
    if args.json:
        print(json.dumps([_as_dict(info, now) for info in tokens]))
        return 0
    rows = [("ID", "USER", "STATE", "SCOPE", "EXPIRES", "LAST USED", "CREATED BY")]
    rows += [(i.id, i.user, i.state(now), i.scope_text, _when(i.expires_at, "never"),
              _when(i.last_used_at), i.created_by) for i in tokens]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_revoke(args: argparse.Namespace, settings_of: Callable) -> int:
    robots = _service(args, settings_of)
    if args.name:
        ids = robots.revoke(name=args.name.removeprefix("robot$"))
    else:
        ids = robots.revoke(token_id=args.id)
    if not ids:
        print("error: no live token matches", file=sys.stderr)
        return 1
    for token_id in ids:
        print(f"robot token {token_id} revoked")
    return 0


def _guarded(func: Callable, settings_of: Callable) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from ociregistry.auth.robots import RobotError

        try:
            return func(args, settings_of)
        except RobotError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def register(sub: Any, common: Callable, settings_of: Callable) -> None:
    token = sub.add_parser("token", help="robot accounts' access tokens (for CI)")
    token_sub = token.add_subparsers(dest="token_command", required=True)

    create = token_sub.add_parser(
        "create", help="create a token for robot NAME (log in as robot$NAME); printed once")
    common(create)
    create.add_argument("name", help="robot name: a-z 0-9 . _ -")
    create.add_argument("--scope", action="append", required=True, metavar="GLOB:ACTIONS",
                        help="repositories and actions, e.g. 'ci/**:pull,push' (repeatable)")
    create.add_argument("--expires", metavar="DURATION",
                        help="e.g. 30d, 12h, 2w, 1y or never (default "
                             "auth.robots.default_expiry_days)")
    create.add_argument("--description", help="what the token is for")
    create.add_argument("--json", action="store_true", help="print the token as JSON")
    create.set_defaults(func=_guarded(cmd_create, settings_of))

    listing = token_sub.add_parser("list", help="list tokens (never their secrets)")
    common(listing)
    listing.add_argument("--all", action="store_true", help="revoked tokens too")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_guarded(cmd_list, settings_of))

    revoke = token_sub.add_parser("revoke", help="revoke a token at once, on every instance")
    common(revoke)
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="token id (from token list)")
    which.add_argument("--name", help="revoke every token of this robot")
    revoke.set_defaults(func=_guarded(cmd_revoke, settings_of))
