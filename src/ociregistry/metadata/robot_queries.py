"""SQL of robot accounts' tokens (table robot_tokens). No rules here: auth/robots.py decides."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ociregistry.metadata import schema as t
from ociregistry.metadata.prepared import Prepared
from ociregistry.metadata.store import MetadataStore


@dataclass(frozen=True)
class RobotTokenRow:
    id: str
    name: str
    secret_hash: str
    scope: str  # JSON
    description: str
    created_by: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


_COLUMNS = tuple(t.robot_tokens.c[f] for f in RobotTokenRow.__dataclass_fields__)


def insert(db: MetadataStore, row: RobotTokenRow) -> None:
    with db.write() as conn:
        conn.execute(t.robot_tokens.insert().values(**row.__dict__))


def get(db: MetadataStore, token_id: str) -> RobotTokenRow | None:
    """One token by id: a primary-key read (every request a robot makes does one).

    Compiled once per store and run on a plain driver cursor: SQLAlchemy's
    statement building and result processing would cost more than the read
    (measured: about 350 µs against 100 µs on SQLite).
    """
    prepared = db.__dict__.get("_robot_token_by_id")
    if prepared is None:
        statement = sa.select(*_COLUMNS).where(t.robot_tokens.c.id == sa.bindparam("id"))
        prepared = db.__dict__["_robot_token_by_id"] = Prepared(statement, db.engine.dialect)
    args = (token_id,) if prepared.order else {"id": token_id}
    with db.read() as conn:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(prepared.sql, args)
            found = cursor.fetchone()
        finally:
            cursor.close()
    return RobotTokenRow(*found) if found is not None else None


def list_tokens(db: MetadataStore, include_revoked: bool = False) -> list[RobotTokenRow]:
    query = sa.select(*_COLUMNS).order_by(t.robot_tokens.c.name, t.robot_tokens.c.created_at)
    if not include_revoked:
        query = query.where(t.robot_tokens.c.revoked_at.is_(None))
    with db.read() as conn:
        return [RobotTokenRow(*row) for row in conn.execute(query)]


def revoke(db: MetadataStore, now: float, token_id: str | None = None,
           name: str | None = None) -> list[str]:
    """Revoke one token (by id) or every live token of a robot (by name); the ids revoked."""
    rt = t.robot_tokens
    where = [rt.c.revoked_at.is_(None)]
    where.append(rt.c.id == token_id if token_id is not None else rt.c.name == name)
    with db.write() as conn:
        ids = list(conn.execute(sa.select(rt.c.id).where(*where)).scalars())
        if ids:
            conn.execute(rt.update().where(rt.c.id.in_(ids)).values(revoked_at=now))
    return ids


def touch(db: MetadataStore, token_id: str, now: float, older_than: float) -> None:
    """Record a use, unless one was recorded after ``older_than`` (another worker did)."""
    rt = t.robot_tokens
    with db.write() as conn:
        conn.execute(
            rt.update()
            .where(rt.c.id == token_id,
                   sa.or_(rt.c.last_used_at.is_(None), rt.c.last_used_at <= older_than))
            .values(last_used_at=now)
        )
