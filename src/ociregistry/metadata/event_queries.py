"""SQL of event delivery and its management: endpoints, leases, cursors, the delivery log.

Invariants:
- An endpoint's ``cursor`` only moves forward under its lease (``lease_token``),
  except when an administrator asks for a redelivery; every event with an id
  above it is still to be handled, in id (= commit) order.
- A lease is taken with one conditional UPDATE (free or expired), so one worker
  of the whole cluster delivers to an endpoint at a time; every later write of
  the worker names its token and changes nothing once the lease was lost.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from ociregistry.metadata import schema as t
from ociregistry.metadata.prepared import Prepared
from ociregistry.metadata.store import MetadataStore

E, EP, D, R = t.events, t.event_endpoints, t.event_deliveries, t.event_redeliveries
LOG_COLUMNS = ("endpoint_id", "event_id", "at", "attempt", "outcome", "status_code",
               "latency_ms", "error", "response", "last_event_id", "events")


def _statements() -> dict[str, sa.Executable]:
    """What every delivery loop runs (each worker looks for work every poll or
    batch): compiled once, since building them cost more CPU than running them."""
    bind = sa.bindparam
    newest = sa.select(sa.func.coalesce(sa.func.max(E.c.id), sa.literal_column("0"))
                       ).scalar_subquery()
    redo = sa.exists().where(R.c.endpoint_id == EP.c.id)
    # (an explicit offset: SQLite writes one, as an anonymous parameter otherwise)
    after = (sa.select(E).where(E.c.id > bind("cursor")).order_by(E.c.id)
             .limit(bind("n")).offset(bind("skip")))
    return {
        "claimable": sa.select(EP.c.id).where(
            EP.c.enabled.is_(True), EP.c.next_attempt_at <= bind("now"),
            sa.or_(EP.c.lease_until.is_(None), EP.c.lease_until < bind("now")),
            sa.or_(EP.c.cursor < newest, redo)),
        "enabled": sa.select(EP.c.id).where(EP.c.enabled.is_(True)),
        "endpoint": sa.select(EP, redo.label("redo")).where(EP.c.id == bind("id")),
        "after": after,
        "after_until": after.where(E.c.id <= bind("until")),
        "settle_row": sa.select(EP.c.failures, EP.c.head_attempts, EP.c.cursor,
                                EP.c.enabled).where(EP.c.id == bind("id"),
                                                    EP.c.lease_token == bind("token")),
        "log": D.insert().values({c: bind(c) for c in LOG_COLUMNS}),
        "lease": EP.update().where(
            EP.c.id == bind("id"),
            sa.or_(EP.c.lease_token.is_(None), EP.c.lease_until < bind("now"),
                   EP.c.lease_token == bind("token")),
        ).values(lease_token=bind("token"), lease_until=bind("until")),
    }


_prepared: dict[str, dict[str, Prepared]] = {}


def _sql(store: MetadataStore, name: str) -> Prepared:
    dialect = store.engine.dialect
    if dialect.name not in _prepared:
        _prepared[dialect.name] = {k: Prepared(v, dialect) for k, v in _statements().items()}
    return _prepared[dialect.name][name]


def _endpoint_update(store: MetadataStore, columns: tuple[str, ...]) -> Prepared:
    """``UPDATE event_endpoints SET <columns> WHERE id = :id``, compiled once per set
    of columns (settle writes a handful of different sets)."""
    statements = _prepared.setdefault(store.engine.dialect.name, {})
    key = "update:" + ",".join(columns)
    if key not in statements:
        bind = sa.bindparam
        statements[key] = Prepared(EP.update().where(EP.c.id == bind("id")).values(
            {c: bind(c) for c in columns}), store.engine.dialect)
    return statements[key]


def max_event_id(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(E.c.id), 0))).scalar())


# -- endpoints -------------------------------------------------------------------------
def endpoint_rows(store: MetadataStore) -> list[Row]:
    with store.read() as conn:
        return conn.execute(sa.select(EP).order_by(EP.c.name)).all()


def endpoint_row(store: MetadataStore, name: str) -> Row | None:
    with store.read() as conn:
        return conn.execute(sa.select(EP).where(EP.c.name == name)).first()


def endpoint_by_id(store: MetadataStore, endpoint_id: int) -> Row | None:
    """The endpoint's row, and ``redo``: whether single events wait to be sent again."""
    with store.read() as conn:
        return _sql(store, "endpoint").run(conn, id=endpoint_id).first()


def insert_endpoint(store: MetadataStore, name: str, source: str, spec: str, secret: str,
                    enabled: bool, reason: str | None = None) -> bool:
    """False when the name is taken. Starts after the newest event: an endpoint gets
    what happens from its creation on (or what a redelivery asks for)."""
    now = time.time()
    with store.write() as conn:
        if conn.execute(sa.select(EP.c.id).where(EP.c.name == name)).first() is not None:
            return False
        conn.execute(EP.insert().values(
            name=name, source=source, spec=spec, secret=secret, enabled=enabled,
            disabled_reason=reason, cursor=max_event_id(conn), failures=0, next_attempt_at=0,
            head_attempts=0, created_at=now, updated_at=now))
        return True


def update_endpoint(store: MetadataStore, name: str, **values: Any) -> bool:
    with store.write() as conn:
        return conn.execute(EP.update().where(EP.c.name == name).values(
            updated_at=time.time(), **values)).rowcount > 0


def delete_endpoint(store: MetadataStore, name: str) -> bool:
    with store.write() as conn:
        row = conn.execute(sa.select(EP.c.id).where(EP.c.name == name)).first()
        if row is None:
            return False
        for table in (R, D):
            conn.execute(table.delete().where(table.c.endpoint_id == row.id))
        conn.execute(EP.delete().where(EP.c.id == row.id))
        return True


def pending(store: MetadataStore) -> dict[int, tuple[int, float | None]]:
    """Endpoint id -> (events after its cursor, the oldest one's time)."""
    with store.read() as conn:
        rows = conn.execute(
            sa.select(EP.c.id, sa.func.count(E.c.id), sa.func.min(E.c.created_at))
            .select_from(EP.outerjoin(E, E.c.id > EP.c.cursor)).group_by(EP.c.id)
        ).all()
    return {row[0]: (int(row[1]), row[2]) for row in rows}


# -- the delivery loop ---------------------------------------------------------------
def claimable(store: MetadataStore, now: float) -> list[int]:
    """Enabled endpoints with work due and no live lease."""
    with store.read() as conn:
        return [row[0] for row in _sql(store, "claimable").run(conn, now=now)]


def enabled_ids(store: MetadataStore) -> set[int]:
    with store.read() as conn:
        return {row[0] for row in _sql(store, "enabled").run(conn)}


def any_enabled(store: MetadataStore) -> bool:
    return bool(enabled_ids(store))


def take_lease(store: MetadataStore, endpoint_id: int, token: str, seconds: float) -> bool:
    """Take (or renew) the endpoint's lease; False when another worker holds it.

    Delivery's writes are not waited for on disk (``progress_write``): a lease, a
    cursor or a log row lost to a power cut means an event sent again, which
    at-least-once delivery allows; pushes don't share their disk flushes with it.
    """
    now = time.time()
    with store.progress_write() as conn:
        return _sql(store, "lease").run(conn, id=endpoint_id, now=now, token=token,
                                        until=now + seconds).rowcount > 0


def release_lease(store: MetadataStore, endpoint_id: int, token: str) -> None:
    with store.progress_write() as conn:
        conn.execute(EP.update().where(EP.c.id == endpoint_id, EP.c.lease_token == token)
                     .values(lease_token=None, lease_until=None))


def events_after(store: MetadataStore, cursor: int, limit: int,
                 until: int | None = None) -> list[Row]:
    """Up to ``limit`` events after ``cursor`` in id order (up to ``until`` included)."""
    with store.read() as conn:
        if until is None:
            return _sql(store, "after").run(conn, cursor=cursor, n=limit, skip=0).all()
        return _sql(store, "after_until").run(conn, cursor=cursor, n=limit, skip=0,
                                                until=until).all()


def event_rows(store: MetadataStore, ids: list[int]) -> list[Row]:
    with store.read() as conn:
        return conn.execute(sa.select(E).where(E.c.id.in_(ids)).order_by(E.c.id)).all()


def redelivery(store: MetadataStore, endpoint_id: int) -> Row | None:
    """The oldest single event asked to be sent again (the row of its event)."""
    with store.read() as conn:
        return conn.execute(
            sa.select(E).select_from(R.join(E, E.c.id == R.c.event_id))
            .where(R.c.endpoint_id == endpoint_id).order_by(E.c.id).limit(1)).first()


def settle(store: MetadataStore, endpoint_id: int, token: str, *, event_id: int,
           redelivery: bool, attempt: dict[str, Any] | None, advance_to: int | None,
           success: bool | None, next_attempt_at: float = 0, disable: str | None = None,
           lease_seconds: float = 30.0, batch_end: int | None = None) -> bool:
    """Record one attempt (if any: one row per request, a batch's included) and its
    consequence, atomically, under the lease (which it extends); False when the lease
    was lost or the endpoint disabled.

    success True: failures reset; False: one more consecutive failure; None: a
    skip (filtered out). ``advance_to``: the new cursor (never backwards); moving it
    ends the head batch. ``batch_end``: a failed batch's last event, kept so that its
    retries carry the same events.
    """
    now = time.time()
    with store.progress_write() as conn:  # as take_lease
        row = _sql(store, "settle_row").run(conn, id=endpoint_id, token=token).first()
        if row is None:
            return False  # the lease was lost: another worker owns the endpoint now
        values: dict[str, Any] = {"updated_at": now, "lease_until": now + lease_seconds}
        if attempt is not None:
            logged = {c: None for c in LOG_COLUMNS}
            logged.update(attempt, endpoint_id=endpoint_id, event_id=event_id, at=now)
            _sql(store, "log").run(conn, **logged)
        if success is True:
            values.update(failures=0, head_attempts=0, next_attempt_at=0)
        elif success is False:
            values.update(failures=row.failures + 1, next_attempt_at=next_attempt_at,
                          head_attempts=0 if advance_to is not None else row.head_attempts + 1)
            if not redelivery and advance_to is None:
                values["batch_end"] = batch_end
        if advance_to is not None and advance_to >= row.cursor:
            values.update(cursor=advance_to, batch_end=None)
            if success is None:
                values["head_attempts"] = 0
        if redelivery and success is not False:  # the single event is done with
            conn.execute(R.delete().where(R.c.endpoint_id == endpoint_id,
                                          R.c.event_id == event_id))
            values["head_attempts"] = 0
        if disable:
            values.update(enabled=False, disabled_reason=disable, lease_token=None,
                          lease_until=None)
        columns = tuple(sorted(values))
        _endpoint_update(store, columns).run(conn, id=endpoint_id, **values)
        return bool(row.enabled) and not disable


# -- delivery log, redelivery, listings ----------------------------------------------
def log_attempt(store: MetadataStore, endpoint_id: int, event_id: int,
                attempt: dict[str, Any]) -> None:
    with store.write() as conn:
        conn.execute(D.insert().values(endpoint_id=endpoint_id, event_id=event_id,
                                       at=time.time(), **attempt))


def deliveries(store: MetadataStore, endpoint_id: int, limit: int, before: int | None,
               outcome: str | None = None, event: str | None = None) -> list[Row]:
    """The endpoint's attempts, newest first; ``event``: only those whose request
    carried (or whose batch range covers) the event with that public id."""
    last = E.alias("last_event")
    query = (sa.select(D, E.c.uid, E.c.action, last.c.uid.label("last_uid"))
             .select_from(D.outerjoin(E, E.c.id == D.c.event_id)
                          .outerjoin(last, last.c.id == D.c.last_event_id))
             .where(D.c.endpoint_id == endpoint_id).order_by(D.c.id.desc()).limit(limit))
    if before is not None:
        query = query.where(D.c.id < before)
    if outcome is not None:
        query = query.where(D.c.outcome == outcome)
    if event is not None:
        wanted = sa.select(E.c.id).where(E.c.uid == event).scalar_subquery()
        query = query.where(D.c.event_id <= wanted,
                            sa.func.coalesce(D.c.last_event_id, D.c.event_id) >= wanted)
    with store.read() as conn:
        return conn.execute(query).all()


def redeliver_since(store: MetadataStore, endpoint_id: int, since: float) -> int:
    """Move the cursor back to just before the first event at or after ``since``;
    returns how many events are now pending."""
    with store.write() as conn:
        first = conn.execute(sa.select(sa.func.min(E.c.id)).where(E.c.created_at >= since)
                             ).scalar()
        cursor = (first - 1) if first is not None else max_event_id(conn)
        conn.execute(EP.update().where(EP.c.id == endpoint_id).values(
            cursor=cursor, head_attempts=0, next_attempt_at=0, batch_end=None,
            updated_at=time.time()))
        return int(conn.execute(sa.select(sa.func.count()).select_from(E)
                                .where(E.c.id > cursor)).scalar())


def redeliver_one(store: MetadataStore, endpoint_id: int, uid: str) -> bool:
    """Queue one event (by its public id) for the endpoint; False if no such event."""
    with store.write() as conn:
        event_id = conn.execute(sa.select(E.c.id).where(E.c.uid == uid)).scalar()
        if event_id is None:
            return False
        exists = conn.execute(sa.select(R.c.event_id).where(
            R.c.endpoint_id == endpoint_id, R.c.event_id == event_id)).first()
        if exists is None:
            conn.execute(R.insert().values(endpoint_id=endpoint_id, event_id=event_id))
        conn.execute(EP.update().where(EP.c.id == endpoint_id).values(next_attempt_at=0))
        return True


def list_events(store: MetadataStore, limit: int, before: int | None, action: str | None,
                repository: str | None) -> list[Row]:
    query = sa.select(E).order_by(E.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(E.c.id < before)
    if action:
        query = query.where(E.c.action == action)
    if repository:
        query = query.where(E.c.repository == repository)
    with store.read() as conn:
        return conn.execute(query).all()


def prune(store: MetadataStore, before: float) -> tuple[int, int]:
    """Delete events and delivery log entries older than ``before``."""
    with store.write() as conn:
        events = conn.execute(E.delete().where(E.c.created_at < before)).rowcount
        log = conn.execute(D.delete().where(D.c.at < before)).rowcount
        # Redeliveries of pruned events would keep their endpoint claimable for nothing.
        conn.execute(R.delete().where(R.c.event_id.not_in(sa.select(E.c.id))))
    return events, log
