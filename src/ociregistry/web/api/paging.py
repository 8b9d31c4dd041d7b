"""Keyset pages over HTTP: the ``limit`` and ``cursor`` parameters, Link headers."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from flask import Response, request

from ociregistry.core.catalog import MAX_LIMIT, KeysetPage
from ociregistry.web.api.blueprint import query

LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
              f"Items per page (1 to {MAX_LIMIT}).")
CURSOR = query("cursor", {"type": "string", "maxLength": 512},
               "Opaque cursor from a Link header (rel=\"next\" or \"prev\") of this listing; "
               "a cursor from another listing or an edited one is a 400 `invalid_cursor`.")
ORDER = query("order", {"type": "string", "enum": ["asc", "desc"]},
              "Sort direction; default: ascending for names, descending otherwise.")


def descending(order: str | None, sort: str) -> bool:
    return order == "desc" if order else sort != "name"


def _url(cursor: str) -> str:
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
    return request.base_url + "?" + urlencode([*args, ("cursor", cursor)])


def page_response(page: KeysetPage[Any], items: list[Any]) -> Response:
    """The page's items as ``{"items": [...], "next": cursor|null, "prev": cursor|null}``."""
    body = {"items": items, "next": page.next_cursor, "prev": page.prev_cursor}
    response = Response(json.dumps(body), mimetype="application/json")
    links = []
    if page.next_cursor:
        links.append(f'<{_url(page.next_cursor)}>; rel="next"')
    if page.prev_cursor:
        links.append(f'<{_url(page.prev_cursor)}>; rel="prev"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return response


def page_schema(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object", "required": ["items", "next", "prev"],
        "properties": {
            "items": {"type": "array", "items": item},
            "next": {"type": ["string", "null"], "description": "cursor of the next page"},
            "prev": {"type": ["string", "null"], "description": "cursor of the previous page"},
        },
    }
