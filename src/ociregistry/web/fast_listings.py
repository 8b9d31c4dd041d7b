"""``GET /v2/`` and the tags list answered in front of Flask (web/fast_reads.py's route).

Both do next to nothing in their Flask handlers (the base endpoint answers ``{}``;
the tags list's page comes from the database or the per-worker page cache,
metadata/tag_list_cache.py), so nearly all of their cost was Flask's floor: werkzeug's
request and response objects, the hooks and the dispatch. ``FastReads`` hands them
here; this does what Flask's hooks and handler do, with the same functions, and
answers Flask's bytes (status, headers in the same order, body):

- ``GET``/``HEAD /v2/``: ``registry_api.base``; with authentication on, only a caller
  with credentials this process can check without bookkeeping (web/fast_reads.py's
  ``_principal``): web/auth.py's hook challenges anonymous callers there (Flask's 401).
- ``GET /v2/<name>/tags/list`` with no query or a plain ``n``/``last`` one:
  ``registry_api.list_tags`` (the core's ``Registry.tags_json``, the same
  ``v2_paging`` functions for ``n`` and the ``Link`` header), pull on the name
  required as Flask's ``authorize`` does.

Flask keeps everything else, before anything was counted: any other query (``ns``
picks a mirror upstream; percent-escapes, repeats and bad ``n`` values are its
parsing and its errors), an unknown repository (NAME_UNKNOWN) and any error of the
core, HEAD of a tags list (Flask's UNSUPPORTED), names under a mirror's prefix, and
what web/fast_reads.py sends to Flask for every request (rate limits, cookies,
conditional headers, bodies, refusals, credentials to check or record).
tests/api/test_fast_listings.py holds the two answers equal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ociregistry.core.actor import SYSTEM, set_actor
from ociregistry.web.observability import request_done
from ociregistry.web.registry_api import _ROUTE_LABELS
from ociregistry.web.v2_paging import next_link, parse_n

if TYPE_CHECKING:
    from ociregistry.auth.service import Principal
    from ociregistry.core.registry import Registry


class ReadRoute(Protocol):
    """What this takes from web/fast_reads.py's ``FastReads`` (which imports this)."""

    registry: Registry

    def caller(self, environ: dict[str, Any], name: str | None) -> Principal | None: ...

    def begin(self, environ: dict[str, Any], method: str, path: str,
              who: Principal) -> list[Any]: ...

    def plain_request(self, environ: dict[str, Any], path: str,
                      query: bool = False) -> bool: ...

    def local_name(self, name: str) -> bool: ...

TAGS_LIST = "/tags/list"
BASE_ROUTE = "/v2/"  # Flask's rule: the metrics label its dispatch gives
TAGS_ROUTE = _ROUTE_LABELS["tags"]
# A query value that reads the same raw and decoded (no %, +, ; or &): a tag's letters.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._-]*")
_JSON = "application/json"


class Answer:
    """A body (or nothing for a HEAD) whose metrics and access-log line are written
    when the server closes it (``observability.request_done``), as Flask's hook does."""

    __slots__ = ("body", "finish")

    def __init__(self, body: Iterable[bytes], finish: tuple[Any, ...]) -> None:
        self.body = body
        self.finish = finish

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        request_done(*self.finish)


def answer(reads: ReadRoute, environ: dict[str, Any], start_response: Any, method: str,
           path: str) -> Iterable[bytes] | None:
    """The answer to ``GET``/``HEAD /v2/`` or a tags list GET (``path`` ends with
    /tags/list), or None: Flask's."""
    if path == BASE_ROUTE:
        if not reads.plain_request(environ, path):
            return None
        who = reads.caller(environ, None)
        if who is None:
            return None
        finish = reads.begin(environ, method, path, who)
        set_actor(SYSTEM)  # nothing is done under it: Flask's teardown at once
        return _respond(start_response, method, b"{}", (), BASE_ROUTE, finish)
    if method != "GET" or not reads.plain_request(environ, path, query=True):
        return None
    name = path[4:-len(TAGS_LIST)]  # registry_api's tags pattern: the rest before it
    page = _page(environ.get("QUERY_STRING") or "")
    if not name or page is None or not reads.local_name(name):
        return None
    who = reads.caller(environ, name)
    if who is None:
        return None
    n, last = page
    finish = reads.begin(environ, method, path, who)
    try:
        array, last_tag, more = reads.registry.tags_json(name, n, last)
    except Exception:  # noqa: BLE001 (unknown repository, outage: Flask answers it)
        return None
    finally:
        set_actor(SYSTEM)  # as Flask's teardown: gthread reuses the thread
    # registry_api.list_tags: the array comes built from the database; the envelope.
    body = f'{{"name": {json.dumps(name)}, "tags": {array}}}'.encode()
    link = ()
    if n is not None and more and last_tag is not None:  # n=0: no Link (spec)
        link = (("Link", next_link(f"/v2/{name}/tags/list", n, last_tag)),)
    return _respond(start_response, method, body, link, TAGS_ROUTE, finish)


def _respond(start_response: Any, method: str, body: bytes,
             extra: tuple[tuple[str, str], ...], route: str,
             finish: list[Any]) -> Iterable[bytes]:
    """A JSON 200 with Flask's headers in Flask's order: the response's own, the
    handler's, then the after-request hook's."""
    size = len(body)
    start_response("200 OK", [
        ("Content-Type", _JSON),
        ("Content-Length", str(size)),
        *extra,
        ("X-Request-ID", finish[-1]),
        ("Docker-Distribution-API-Version", "registry/2.0"),
    ])
    finish[2], finish[6] = route, size
    return Answer((body,) if method == "GET" else (), tuple(finish))


def _page(query: str) -> tuple[int | None, str | None] | None:
    """(n, last) as ``v2_paging.page_args`` reads them from a plain query (``n`` and
    ``last`` at most once each, plain values); None: Flask reads it (and answers a bad
    ``n`` with its error)."""
    n: int | None = None
    last: str | None = None
    if not query:
        return n, last
    seen = set()
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if not sep or key in seen or not _PLAIN_VALUE.fullmatch(value):
            return None
        seen.add(key)
        if key == "n":
            try:
                n = parse_n(value)
            except Exception:  # noqa: BLE001 (PAGINATION_NUMBER_INVALID: Flask's)
                return None
        elif key == "last":
            last = value or None
        else:
            return None
    return n, last
