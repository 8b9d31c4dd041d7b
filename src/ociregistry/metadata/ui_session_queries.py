"""SQL of the web UI's server-side sessions (table ui_sessions).

Rows are keyed by the SHA-256 of the session id the cookie carries; the
checks on them (expiry, revocation, password stamp) live in auth/sessions.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore


@dataclass(frozen=True)
class SessionRow:
    user: str
    stamp: str
    expires_at: float
    revoked_at: float | None


def create(db: MetadataStore, id_hash: str, user: str, stamp: str, now: float,
           expires_at: float) -> None:
    s = t.ui_sessions
    with db.write() as conn:
        # Expired rows go when someone signs in: the table stays the size of
        # the sessions alive, with no job of its own.
        conn.execute(s.delete().where(s.c.expires_at < now))
        conn.execute(s.insert().values(id_hash=id_hash, user=user, stamp=stamp,
                                       created_at=now, expires_at=expires_at))


def lookup(db: MetadataStore, id_hash: str) -> SessionRow | None:
    s = t.ui_sessions
    with db.read() as conn:
        row = conn.execute(
            sa.select(s.c.user, s.c.stamp, s.c.expires_at, s.c.revoked_at)
            .where(s.c.id_hash == id_hash)
        ).first()
    return None if row is None else SessionRow(*row)


def revoke(db: MetadataStore, id_hash: str, now: float) -> bool:
    """Revoke one session; False when it was unknown or already revoked."""
    s = t.ui_sessions
    with db.write() as conn:
        return bool(conn.execute(
            s.update().where(s.c.id_hash == id_hash, s.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount)


def revoke_user(db: MetadataStore, user: str, now: float, keep_stamp: str | None = None) -> int:
    """Revoke every live session of ``user`` (but those made with ``keep_stamp``,
    the current password's); how many there were."""
    s = t.ui_sessions
    where = [s.c.user == user, s.c.revoked_at.is_(None), s.c.expires_at > now]
    if keep_stamp is not None:
        where.append(s.c.stamp != keep_stamp)
    with db.write() as conn:
        return int(conn.execute(s.update().where(*where).values(revoked_at=now)).rowcount)
