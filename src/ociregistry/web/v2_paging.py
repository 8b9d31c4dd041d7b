"""Pagination of the /v2 listings (catalog, tags): the ``n``/``last`` query and the
``Link: <...>; rel="next"`` header, shared by local and mirrored repositories."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import request

from ociregistry.core.errors import PaginationNumberInvalid

MAX_PAGE = 10000  # the largest page a client gets, whatever n it asks for


def page_args() -> tuple[int | None, str | None]:
    """(n, last) of the request; 400 PAGINATION_NUMBER_INVALID for a bad n."""
    return parse_n(request.args.get("n")), request.args.get("last") or None


def parse_n(raw: str | None) -> int | None:
    """The page size ``n`` from its query value (None or empty: no limit; at most
    MAX_PAGE); 400 PAGINATION_NUMBER_INVALID for anything but digits. Also what the
    fast route (web/fast_listings.py) reads it with."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()):  # isdigit() alone takes "²"
        raise PaginationNumberInvalid(detail={"n": raw[:50]})
    return min(int(raw), MAX_PAGE) if len(raw) < 19 else MAX_PAGE


def next_link(path: str, n: int, last: str, **extra: str) -> str:
    query = urlencode({**extra, "n": n, "last": last})
    return f'<{path}?{query}>; rel="next"'
