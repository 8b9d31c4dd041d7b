"""``ociregistry user add|passwd|remove|list``: manage the htpasswd file.

The file is the one ``auth.htpasswd`` names (or ``--htpasswd``); a running
registry picks changes up by itself. Passwords are read from the terminal
(twice), or from standard input with ``--password-stdin``; never from the
command line, where other users could see them.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from ociregistry.auth.htpasswd import Htpasswd, HtpasswdError
from ociregistry.config import Settings, load_settings


def _file(args: argparse.Namespace) -> tuple[Htpasswd, int]:
    settings = load_settings(args.config)
    args.settings = settings
    path = args.htpasswd or settings.auth.htpasswd
    if not path:
        raise HtpasswdError("no htpasswd file: set auth.htpasswd or pass --htpasswd")
    cost = getattr(args, "cost", None) or settings.auth.bcrypt_cost
    return Htpasswd(path), cost


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise HtpasswdError("the passwords differ")
    return password


def cmd_add(args: argparse.Namespace) -> int:
    users, cost = _file(args)
    users.set_password(args.name, _password(args), cost, create=True, update=False)
    print(f"user {args.name} added to {users.path}")
    return 0


def _end_sessions(settings: Settings, user: str) -> None:
    """Revoke the user's web UI sessions in the index, for every instance.

    Sessions also end by themselves once a registry sees the new password
    hash; this makes it immediate and covers instances with a stale copy.
    """
    import sqlalchemy as sa

    from ociregistry.auth.sessions import UISessions
    from ociregistry.metadata.store import MetadataStore

    url = settings.database_url
    path = sa.engine.make_url(url).database if url.startswith("sqlite") else None
    if path is not None and not os.path.exists(path):
        return  # no registry has run here yet: no sessions to end
    db = MetadataStore(url, pool_size=1)
    try:
        ended = UISessions(db, settings.ui.session_lifetime_seconds).end_user(user)
    except sa.exc.SQLAlchemyError as exc:
        print(f"warning: web UI sessions not revoked in the database ({exc.__class__.__name__}); "
              "they end when the registry reads the new file", file=sys.stderr)
        return
    finally:
        db.dispose()
    if ended:
        print(f"{ended} web UI session(s) of {user} ended")


def cmd_passwd(args: argparse.Namespace) -> int:
    users, cost = _file(args)
    users.set_password(args.name, _password(args), cost, create=False, update=True)
    print(f"password of {args.name} changed")
    _end_sessions(args.settings, args.name)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    users, _ = _file(args)
    users.remove(args.name)
    print(f"user {args.name} removed")
    _end_sessions(args.settings, args.name)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    users, _ = _file(args)
    for name in users.users():
        print(name)
    return 0


def _guarded(func):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (HtpasswdError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    user = subparsers.add_parser("user", help="manage users (the htpasswd file)")
    user_sub = user.add_subparsers(dest="user_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
        parser.add_argument("--htpasswd", metavar="FILE", help="default: auth.htpasswd")

    def with_password(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", help="user name")
        parser.add_argument("--password-stdin", action="store_true",
                            help="read the password from standard input")
        parser.add_argument("--cost", type=int, choices=range(4, 32), metavar="4..31",
                            help="bcrypt cost (default auth.bcrypt_cost, 12)")

    add = user_sub.add_parser("add", help="add a user")
    common(add)
    with_password(add)
    add.set_defaults(func=_guarded(cmd_add))

    passwd = user_sub.add_parser("passwd", help="change a user's password")
    common(passwd)
    with_password(passwd)
    passwd.set_defaults(func=_guarded(cmd_passwd))

    remove = user_sub.add_parser("remove", help="remove a user")
    common(remove)
    remove.add_argument("name", help="user name")
    remove.set_defaults(func=_guarded(cmd_remove))

    listing = user_sub.add_parser("list", help="list the users")
    common(listing)
    listing.set_defaults(func=_guarded(cmd_list))
