"""SQL of the immutable and protected tag rules managed at run time (lifecycle/tag_rules.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import schema as t
from ociregistry.metadata.prepared import once

_COLUMNS = ("id", "kind", "repositories", "tags", "users", "groups", "description",
            "created_by", "created_at")


def _row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["users"], out["groups"] = json.loads(out["users"]), json.loads(out["groups"])
    return out


def list_rules(conn: Connection) -> list[dict[str, Any]]:
    r = t.tag_rules
    return [_row(row) for row in conn.execute(
        sa.select(*(r.c[name] for name in _COLUMNS)).order_by(r.c.id))]


def raw_rules(conn: Connection) -> tuple[tuple[Any, ...], ...]:
    """The stored rules as the driver returns them (columns of _COLUMNS, by id), compiled
    once: every tag push reads them, and parses them only when they changed."""
    r = t.tag_rules
    return tuple(tuple(row) for row in once(conn, "tag_rules.raw", lambda: sa.select(
        *(r.c[name] for name in _COLUMNS)).order_by(r.c.id)).rows(conn))


def parse_raw(rows: tuple[tuple[Any, ...], ...]) -> list[dict[str, Any]]:
    """raw_rules' rows as list_rules gives them."""
    out = []
    for row in rows:
        rule = dict(zip(_COLUMNS, row, strict=True))
        rule["users"], rule["groups"] = json.loads(rule["users"]), json.loads(rule["groups"])
        out.append(rule)
    return out


def get_rule(conn: Connection, rule_id: int) -> dict[str, Any] | None:
    r = t.tag_rules
    row = conn.execute(sa.select(*(r.c[name] for name in _COLUMNS))
                       .where(r.c.id == rule_id)).first()
    return _row(row) if row else None


def add_rule(conn: Connection, kind: str, repositories: str, tags: str, users: list[str],
             groups: list[str], description: str, created_by: str) -> int:
    return conn.execute(t.tag_rules.insert().values(
        kind=kind, repositories=repositories, tags=tags, users=json.dumps(users),
        groups=json.dumps(groups), description=description, created_by=created_by,
        created_at=time.time())).inserted_primary_key[0]


def delete_rule(conn: Connection, rule_id: int) -> bool:
    return conn.execute(t.tag_rules.delete().where(t.tag_rules.c.id == rule_id)).rowcount > 0
