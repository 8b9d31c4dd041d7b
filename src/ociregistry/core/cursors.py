"""Opaque, signed keyset cursors: where a page ends, and which listing it belongs to.

A cursor is base64url(JSON) + "." + a truncated HMAC-SHA256 over it. The
listing's identity (its sort, order and filters) is part of what is signed, so
a cursor cannot be replayed against another listing, and any edited byte makes
it invalid (BadCursor, a 400 for the caller) rather than a surprising page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

MAX_CURSOR = 512


class BadCursor(ValueError):
    """The cursor was not made by this registry for this listing."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"ociregistry api cursor\0" + key).digest()

    def _mac(self, body: str, listing: str) -> str:
        mac = hmac.new(self._key, f"{listing}\0{body}".encode(), hashlib.sha256).digest()
        return _b64(mac[:16])

    def encode(self, listing: str, position: dict[str, Any]) -> str:
        body = _b64(json.dumps(position, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body, listing)}"

    def decode(self, listing: str, cursor: str) -> dict[str, Any]:
        if len(cursor) > MAX_CURSOR or cursor.count(".") != 1 or not cursor.isascii():
            raise BadCursor("malformed cursor")
        body, mac = cursor.split(".")
        # Both ASCII (checked above): compare_digest refuses other str.
        if not hmac.compare_digest(mac, self._mac(body, listing)):
            raise BadCursor("this cursor does not belong to this listing")
        try:
            value = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError) as exc:
            raise BadCursor("malformed cursor") from exc
        if not isinstance(value, dict):
            raise BadCursor("malformed cursor")
        return value
