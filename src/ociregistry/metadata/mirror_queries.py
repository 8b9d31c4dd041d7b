"""SQL of the pull-through cache: tag freshness, fill leases, upstream state.

Tables in schema.py (mirror_tags, mirror_fills, mirror_upstreams); the rules that
use them live in mirror/. Every function takes the MetadataStore and opens its own
short transaction: none is held while bytes flow from upstream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore


@dataclass(frozen=True)
class Freshness:
    """What upstream last said of a reference: digest (None: 404) and when."""

    upstream: str
    digest: str | None
    checked_at: float


@dataclass(frozen=True)
class UpstreamState:
    name: str
    rate_limited_until: float | None
    ratelimit_remaining: int | None
    last_ok_at: float | None
    last_error: str | None
    last_error_at: float | None


# -- freshness ------------------------------------------------------------
def freshness(store: MetadataStore, repository: str, reference: str) -> Freshness | None:
    c = t.mirror_tags.c
    with store.read() as conn:
        row = conn.execute(
            sa.select(c.upstream, c.digest, c.checked_at)
            .where(c.repository == repository, c.reference == reference)
        ).first()
    return None if row is None else Freshness(row.upstream, row.digest, row.checked_at)


def record_check(store: MetadataStore, repository: str, reference: str, upstream: str,
                 digest: str | None, at: float | None = None) -> None:
    """Upstream said ``digest`` (None: not found) for the reference just now."""
    now = time.time() if at is None else at
    values = {"upstream": upstream, "digest": digest, "checked_at": now}
    with store.progress_write() as conn:
        conn.execute(
            store._insert(t.mirror_tags)
            .values(repository=repository, reference=reference, **values)
            .on_conflict_do_update(index_elements=["repository", "reference"], set_=values)
        )


def forget(store: MetadataStore, repository: str, reference: str | None = None) -> int:
    """Drop freshness rows of a repository (one reference, or all): the next pull asks."""
    c = t.mirror_tags.c
    where = [c.repository == repository]
    if reference is not None:
        where.append(c.reference == reference)
    with store.write() as conn:
        return conn.execute(t.mirror_tags.delete().where(*where)).rowcount or 0


def repository_checks(store: MetadataStore, repository: str) -> list[tuple[str, Freshness]]:
    """(reference, freshness) of a mirrored repository, newest check first (UI, API)."""
    c = t.mirror_tags.c
    with store.read() as conn:
        rows = conn.execute(
            sa.select(c.reference, c.upstream, c.digest, c.checked_at)
            .where(c.repository == repository).order_by(c.checked_at.desc())
        ).all()
    return [(r.reference, Freshness(r.upstream, r.digest, r.checked_at)) for r in rows]


# -- fill leases (single flight across workers and instances) ------------
# Leases, freshness checks and upstream state commit without waiting for the disk
# (``progress_write``): a lease lost in a power cut has expired by the restart, a lost
# check costs one more question upstream, the state is informational. The content they
# describe (manifests, blobs) is written durably through the normal paths.
def take_fill(store: MetadataStore, key: str, owner: str, upstream: str,
              lease_seconds: float) -> bool:
    """True when ``owner`` now holds the fill of ``key`` (free, expired or already its own)."""
    now = time.time()
    c = t.mirror_fills.c
    with store.progress_write() as conn:
        store.lock_digest(conn, f"fill:{key}")  # PostgreSQL: one winner of a free row
        row = conn.execute(sa.select(c.owner, c.lease_until).where(c.key == key)).first()
        if row is not None and row.lease_until > now and row.owner != owner:
            return False
        values = {"owner": owner, "upstream": upstream, "started_at": now,
                  "lease_until": now + lease_seconds, "bytes_done": 0}
        conn.execute(
            store._insert(t.mirror_fills).values(key=key, **values)
            .on_conflict_do_update(index_elements=["key"], set_=values)
        )
        return True


def renew_fill(store: MetadataStore, key: str, owner: str, lease_seconds: float,
               bytes_done: int) -> bool:
    """Extend the lease while bytes flow; False when another owner took it over."""
    c = t.mirror_fills.c
    with store.progress_write() as conn:
        count = conn.execute(
            t.mirror_fills.update().where(c.key == key, c.owner == owner)
            .values(lease_until=time.time() + lease_seconds, bytes_done=bytes_done)
        ).rowcount
    return bool(count)


def release_fill(store: MetadataStore, key: str, owner: str) -> None:
    c = t.mirror_fills.c
    with store.progress_write() as conn:
        conn.execute(t.mirror_fills.delete().where(c.key == key, c.owner == owner))


def fill_in_progress(store: MetadataStore, key: str) -> bool:
    """True while someone holds an unexpired lease on ``key``."""
    c = t.mirror_fills.c
    with store.read() as conn:
        until = conn.execute(sa.select(c.lease_until).where(c.key == key)).scalar()
    return until is not None and until > time.time()


def active_fills(store: MetadataStore) -> list[dict]:
    """Fills under way (for the management API and the UI)."""
    c = t.mirror_fills.c
    with store.read() as conn:
        rows = conn.execute(sa.select(t.mirror_fills).where(c.lease_until > time.time())
                            .order_by(c.started_at)).all()
    return [dict(r._mapping) for r in rows]


# -- upstream state ---------------------------------------------------------
def upstream_state(store: MetadataStore, name: str) -> UpstreamState | None:
    c = t.mirror_upstreams.c
    with store.read() as conn:
        row = conn.execute(sa.select(t.mirror_upstreams).where(c.name == name)).first()
    return None if row is None else UpstreamState(
        row.name, row.rate_limited_until, row.ratelimit_remaining, row.last_ok_at,
        row.last_error, row.last_error_at)


def all_upstream_states(store: MetadataStore) -> dict[str, UpstreamState]:
    with store.read() as conn:
        rows = conn.execute(sa.select(t.mirror_upstreams)).all()
    return {r.name: UpstreamState(r.name, r.rate_limited_until, r.ratelimit_remaining,
                                  r.last_ok_at, r.last_error, r.last_error_at) for r in rows}


def update_upstream(store: MetadataStore, name: str, **values: object) -> None:
    """Set some of rate_limited_until, ratelimit_remaining, last_ok_at, last_error(_at)."""
    allowed = {"rate_limited_until", "ratelimit_remaining", "last_ok_at", "last_error",
               "last_error_at"}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"unknown upstream state columns: {sorted(unknown)}")
    if isinstance(values.get("last_error"), str):
        values["last_error"] = str(values["last_error"])[:500]
    values["updated_at"] = time.time()
    with store.progress_write() as conn:
        conn.execute(
            store._insert(t.mirror_upstreams).values(name=name, **values)
            .on_conflict_do_update(index_elements=["name"], set_=values)
        )


def purge_checks(store: MetadataStore, upstream: str, negative_older_than: float,
                 older_than: float | None = None) -> int:
    """Delete cached 404s checked before ``negative_older_than`` (and, if given, any
    row checked before ``older_than``): housekeeping for GC and eviction."""
    c = t.mirror_tags.c
    stale_404 = sa.and_(c.digest.is_(None), c.checked_at < negative_older_than)
    where = stale_404 if older_than is None else sa.or_(stale_404, c.checked_at < older_than)
    with store.write() as conn:
        return conn.execute(
            t.mirror_tags.delete().where(c.upstream == upstream, where)).rowcount or 0
