"""Web UI sessions kept in the index, so that any instance can end them. No Flask here.

A sign-in makes a random session id; the (signed) cookie carries only that id
and the index keeps a row under its SHA-256 (metadata/ui_session_queries.py):
user, expiry, revocation, and the fingerprint of the user's password hash at
sign-in. Every UI request looks the row up (one indexed read), so

- signing out revokes the row: the old cookie is worth nothing, on every instance;
- ``ociregistry user passwd`` / ``user remove`` revoke the user's rows;
- a password changed by editing the htpasswd file changes the fingerprint: the
  session ends on the first instance that sees the new file, which also revokes
  the user's older sessions in the index for every other instance.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from ociregistry import metrics
from ociregistry.metadata import ui_session_queries as queries
from ociregistry.metadata.store import MetadataStore


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


class UISessions:
    def __init__(self, db: MetadataStore, lifetime: float) -> None:
        self.db = db
        self.lifetime = lifetime

    def start(self, user: str, stamp: str) -> str:
        """A new session for ``user``: the id to put in the cookie."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        queries.create(self.db, _hash(session_id), user, stamp, now, now + self.lifetime)
        return session_id

    def user(self, session_id: str, stamp_of: Callable[[str], str | None]) -> str | None:
        """The user a live session stands for; None when it is unknown, expired,
        revoked, or their password (``stamp_of``: its current fingerprint) changed."""
        if not isinstance(session_id, str) or not session_id:
            return None
        row = queries.lookup(self.db, _hash(session_id))
        now = time.time()
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            return None
        current = stamp_of(row.user)
        if current is None or not hmac.compare_digest(current, row.stamp):
            # This instance sees a new password (or none): end the user's older
            # sessions for every instance, not only this cookie.
            ended = queries.revoke_user(self.db, row.user, now, keep_stamp=current)
            metrics.UI_SESSIONS_REVOKED.labels("password_changed").inc(ended)
            return None
        return row.user

    def end(self, session_id: str) -> bool:
        """Sign-out: revoke this session everywhere."""
        if not isinstance(session_id, str) or not session_id:
            return False
        ended = queries.revoke(self.db, _hash(session_id), time.time())
        if ended:
            metrics.UI_SESSIONS_REVOKED.labels("sign_out").inc()
        return ended

    def end_user(self, user: str) -> int:
        """Revoke every session of ``user`` (password changed, user removed)."""
        return queries.revoke_user(self.db, user, time.time())
