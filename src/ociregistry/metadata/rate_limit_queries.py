"""SQL of the rate limits every worker and instance share.

Each function is one atomic statement per key (an upsert with RETURNING), so
counts are exact whichever process or instance runs it; the rules (rates,
windows, batching) live in auth/ratelimit.py and auth/bruteforce.py.
"""

from __future__ import annotations

import sqlalchemy as sa

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore


def take(db: MetadataStore, key: str, now: float, cost: float, span: float,
         nonce: str) -> tuple[bool, float]:
    """Take ``cost`` seconds of a GCRA bucket whose tolerance is ``span``.

    Granted when max(tat, now) + cost <= now + span; the bucket's tat then
    moves on by ``cost``. Answers (granted, tat after the statement).
    """
    b = t.rate_limit_buckets
    base = sa.case((b.c.tat > now, b.c.tat), else_=now)
    fits = base + cost <= now + span
    statement = (
        db._insert(b)
        .values(key=key, tat=now + cost, grant_id=nonce)
        .on_conflict_do_update(index_elements=["key"], set_={
            "tat": sa.case((fits, base + cost), else_=b.c.tat),
            "grant_id": sa.case((fits, nonce), else_=b.c.grant_id),
        })
        .returning(b.c.tat, b.c.grant_id)
    )
    with db.write() as conn:
        tat, grant_id = conn.execute(statement).one()
    return grant_id == nonce, float(tat)


def count_failure(db: MetadataStore, keys: list[str], now: float,
                  window: float) -> list[tuple[int, float]]:
    """Add one failure to each key's window; each key's (failures, window_start).

    A window starts at the first failure and lasts ``window`` seconds. Keys are
    taken in sorted order, so two transactions never wait on each other in a
    circle (PostgreSQL row locks).
    """
    a = t.auth_failures
    fresh = a.c.window_start > now - window
    out: dict[str, tuple[int, float]] = {}
    with db.write() as conn:
        for key in sorted(set(keys)):
            row = conn.execute(
                db._insert(a)
                .values(key=key, window_start=now, failures=1)
                .on_conflict_do_update(index_elements=["key"], set_={
                    "failures": sa.case((fresh, a.c.failures + 1), else_=1),
                    "window_start": sa.case((fresh, a.c.window_start), else_=now),
                })
                .returning(a.c.failures, a.c.window_start)
            ).one()
            out[key] = (int(row[0]), float(row[1]))
    return [out[key] for key in keys]


def refund_failure(db: MetadataStore, windows: list[tuple[str, float]]) -> None:
    """Take back one counted attempt (it succeeded) from each (key, window_start)."""
    a = t.auth_failures
    with db.write() as conn:
        for key, start in sorted(windows):
            conn.execute(
                a.update()
                .where(a.c.key == key, a.c.window_start == start, a.c.failures > 0)
                .values(failures=a.c.failures - 1)
            )


def prune_buckets(db: MetadataStore, now: float) -> None:
    """Drop buckets that are full again (a missing row is a full bucket)."""
    b = t.rate_limit_buckets
    with db.write() as conn:
        conn.execute(b.delete().where(b.c.tat < now))


def prune_failures(db: MetadataStore, now: float, window: float) -> None:
    """Drop failure windows that have ended."""
    a = t.auth_failures
    with db.write() as conn:
        conn.execute(a.delete().where(a.c.window_start < now - window))
