"""``ociregistry ls|tags|rm|gc --remote``: a client of a remote registry's management API.

Credentials are the ones docker keeps: the ``auths`` entries of
``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``), whose
``auth`` is base64 ``user:password`` (``docker login`` / ``podman login
--authfile`` write them). Credential helpers (``credsStore``, ``credHelpers``)
are not consulted. The registry is ``--remote URL`` or ``$OCIREGISTRY_REMOTE``.
Standard library only (urllib): no extra dependency.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

DEFAULT_REMOTE = "http://127.0.0.1:5000"


class RemoteError(Exception):
    """A request the remote refused, or could not be sent; the message says which."""


# -- credentials ------------------------------------------------------------------------
def _docker_config_path() -> str:
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"),
                                                                 ".docker")
    return os.path.join(directory, "config.json")


def _host_key(entry: str) -> str:
    """``https://reg.example:5000/v2/`` and ``reg.example:5000`` are the same registry."""
    if "://" not in entry:
        entry = "//" + entry
    return urllib.parse.urlsplit(entry).netloc.lower()


def credentials(remote: str) -> tuple[str, str] | None:
    """The user and password docker keeps for ``remote``'s host; None when there are none."""
    path = _docker_config_path()
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RemoteError(f"cannot read {path}: {exc}") from exc
    wanted = _host_key(remote)
    for key, entry in (config.get("auths") or {}).items():
        if _host_key(key) != wanted or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise RemoteError(f"{path}: the auth entry of {key} is not base64 "
                                  "user:password") from exc
            if sep:
                return user, password
        if entry.get("username") and entry.get("password"):
            return entry["username"], entry["password"]
    return None


# -- HTTP ---------------------------------------------------------------------------------
class Remote:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        url = url.rstrip("/")
        if "://" not in url:
            url = "https://" + url
        self.url = url
        self.timeout = timeout
        self.creds = credentials(url)

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                body: Any = None) -> tuple[int, Any, dict[str, str]]:
        url = path if path.startswith("http") else self.url + "/api/v1" + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items()
                                                 if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        if self.creds:
            token = base64.b64encode(f"{self.creds[0]}:{self.creds[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None, dict(response.headers)
        except urllib.error.HTTPError as exc:
            raise RemoteError(self._problem(exc)) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RemoteError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from exc

    def _problem(self, exc: urllib.error.HTTPError) -> str:
        try:
            problem = json.loads(exc.read())
            text = f"{problem.get('detail') or problem.get('title')} ({problem.get('code')})"
        except ValueError:
            text = exc.reason
        if exc.code == 401 and not self.creds:
            text += f"; no credentials for {_host_key(self.url)} in {_docker_config_path()}"
        return f"{exc.code}: {text}"

    def pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a keyset listing, following rel="next"."""
        _, body, _ = self.request("GET", path, params)
        while True:
            yield from body["items"]
            if not body.get("next"):
                return
            _, body, _ = self.request("GET", path, {**params, "cursor": body["next"]})


def _quote(repository: str) -> str:
    return urllib.parse.quote(repository, safe="/")


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# -- commands ------------------------------------------------------------------------------
def cmd_ls(args: argparse.Namespace) -> int:
    remote = Remote(args.remote)
    items = list(remote.pages("/repositories", {"q": args.filter, "sort": args.sort,
                                                "limit": 1000}))
    if args.json:
        print(json.dumps(items))
        return 0
    rows = [("REPOSITORY", "TAGS", "SIZE", "LAST PUSH")]
    rows += [(r["name"], str(r["tags"]), _size(r["size"]), _when(r.get("last_push")))
             for r in items]
    _table(rows)
    return 0


def cmd_tags(args: argparse.Namespace) -> int:
    remote = Remote(args.remote)
    params = {"sort": args.sort, "glob": args.glob, "order": args.order, "limit": 1000}
    items = list(remote.pages(f"/repositories/{_quote(args.repository)}/tags", params))
    if args.json:
        print(json.dumps(items))
        return 0
    rows = [("TAG", "DIGEST", "SIZE", "PUSHED")]
    rows += [(t["name"], t["digest"][:19], _size(t["size"]), _when(t["pushed_at"]))
             for t in items]
    _table(rows)
    return 0


def _split_reference(reference: str) -> tuple[str, str, str]:
    """(repository, digest, tag) of ``REPO@DIGEST`` or ``REPO:TAG``; one of the last two."""
    name, at, digest = reference.partition("@")
    if at:
        if not re.fullmatch(r"[a-z0-9]+:[a-f0-9]{32,128}", digest):
            raise RemoteError(f"{reference!r}: the digest reads sha256:<hex>")
        return name, digest, ""
    name, colon, tag = reference.rpartition(":")
    if not colon or not name or "/" in tag or not tag:
        raise RemoteError(f"{reference!r}: write REPOSITORY:TAG or REPOSITORY@DIGEST")
    return name, "", tag


def cmd_rm(args: argparse.Namespace) -> int:
    name, digest, tag = _split_reference(args.reference)
    remote = Remote(args.remote)
    if digest:
        remote.request("DELETE", f"/repositories/{_quote(name)}/manifests/{digest}")
    else:
        remote.request("DELETE", f"/repositories/{_quote(name)}/tags/{urllib.parse.quote(tag)}")
    print(f"deleted {args.reference}")
    return 0


def cmd_gc_remote(args: argparse.Namespace) -> int:
    remote = Remote(args.remote)
    _, status, _ = remote.request("POST", "/admin/gc", body={
        "dry_run": bool(args.dry_run), "delete_untagged": bool(args.delete_untagged)})
    job = status["job"]
    print(f"garbage collection {job} started on {remote.url}", file=sys.stderr)
    deadline = time.monotonic() + args.wait
    while status.get("job") == job and status["state"] in ("starting", "running"):
        if time.monotonic() > deadline:
            print(f"still running after {args.wait:.0f}s; poll GET /api/v1/admin/gc/jobs/{job}",
                  file=sys.stderr)
            return 4
        time.sleep(0.5)
        _, status, _ = remote.request("GET", "/admin/gc")
    if status.get("job") != job or status["state"] != "finished":
        print(f"error: the run ended as {status.get('state')}: {status.get('error', '')}",
              file=sys.stderr)
        return 3
    result = status["result"]
    verb = "would free" if result["dry_run"] else "freed"
    print(f"{verb} {result['bytes_freed']} bytes: {result['blobs_deleted']} blobs, "
          f"{result['manifests_deleted']} manifests, {result['uploads_expired']} upload "
          f"sessions, {result['orphan_files_deleted']} orphan files")
    if args.json:
        print(json.dumps(result))
    return 0


def _guarded(func):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except RemoteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def run_gc_remote(args: argparse.Namespace) -> int:
    """``ociregistry gc --remote URL`` (cli.py hands over when --remote is given)."""
    return _guarded(cmd_gc_remote)(args)


def _remote_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--remote", metavar="URL",
                        default=os.environ.get("OCIREGISTRY_REMOTE", DEFAULT_REMOTE),
                        help="registry URL (default $OCIREGISTRY_REMOTE or "
                             f"{DEFAULT_REMOTE}); credentials from docker's config.json")
    parser.add_argument("--json", action="store_true", help="print JSON")


def register(sub: Any) -> None:
    ls = sub.add_parser("ls", help="list a remote registry's repositories (management API)")
    _remote_option(ls)
    ls.add_argument("filter", nargs="?", help="names containing this text")
    ls.add_argument("--sort", choices=("name", "pushed", "size"), default="name")
    ls.set_defaults(func=_guarded(cmd_ls))

    tags = sub.add_parser("tags", help="list a repository's tags on a remote registry")
    _remote_option(tags)
    tags.add_argument("repository")
    tags.add_argument("--sort", choices=("name", "pushed"), default="name")
    tags.add_argument("--order", choices=("asc", "desc"),
                      help="default: names ascending, push times newest first")
    tags.add_argument("--glob", help="tags matching this glob, e.g. 'v1.*'")
    tags.set_defaults(func=_guarded(cmd_tags))

    rm = sub.add_parser("rm", help="delete a tag (REPO:TAG) or a manifest (REPO@DIGEST) "
                                   "on a remote registry")
    _remote_option(rm)
    rm.add_argument("reference", metavar="REPO:TAG|REPO@DIGEST")
    rm.set_defaults(func=_guarded(cmd_rm))
