"""Event delivery's bookkeeping (lease, cursor, delivery log) commits without a WAL
flush of its own, and the delivery loop's compiled statements answer as the
statements they replace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ociregistry.metadata import event_queries as q
from ociregistry.metadata.store import MetadataStore


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    db = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    db.create_schema()
    db.events.install(lambda action, fields: {"uid": f"u-{action}-{len(fields)}",
                                              "created_at": 1.0, "action": action, **fields})
    yield db
    db.dispose()


def test_delivery_writes_commit_without_a_flush(store: MetadataStore) -> None:
    assert store.wal_sync is not None
    assert q.insert_endpoint(store, "hook", "api", json.dumps({"url": "http://x/"}),
                             "whsec_x", True)
    endpoint = q.endpoint_row(store, "hook")
    with store.write() as conn:
        store.events.emit(conn, "quota.warning", repository="a/b")
    flushes = store.wal_sync.flushes
    assert flushes > 0  # the change and its event: a durable commit
    assert q.take_lease(store, endpoint.id, "token", 30)
    [event] = q.events_after(store, endpoint.cursor, 10)
    assert q.settle(store, endpoint.id, "token", event_id=event.id, redelivery=False,
                    attempt={"attempt": 1, "outcome": "delivered", "status_code": 204,
                             "latency_ms": 1.0, "error": None, "response": ""},
                    advance_to=event.id, success=True)
    q.release_lease(store, endpoint.id, "token")
    assert store.wal_sync.flushes == flushes  # committed, not waited for on disk
    row = q.endpoint_by_id(store, endpoint.id)
    assert row.cursor == event.id and row.lease_token is None and not row.redo
    assert [d.outcome for d in q.deliveries(store, endpoint.id, 10, None)] == ["delivered"]


def test_compiled_delivery_queries(store: MetadataStore) -> None:
    assert q.insert_endpoint(store, "hook", "api", json.dumps({"url": "http://x/"}),
                             "whsec_x", True)
    endpoint = q.endpoint_row(store, "hook")
    assert q.claimable(store, 1e12) == [] and q.enabled_ids(store) == {endpoint.id}
    for n in range(3):
        with store.write() as conn:
            store.events.emit(conn, f"test.e{n}", repository="a/b")
    ids = [e.id for e in q.events_after(store, endpoint.cursor, 10)]
    assert len(ids) == 3 and ids == sorted(ids)
    assert [e.id for e in q.events_after(store, endpoint.cursor, 2)] == ids[:2]
    assert [e.id for e in q.events_after(store, ids[0], 10, until=ids[1])] == [ids[1]]
    assert q.claimable(store, 1e12) == [endpoint.id]
    assert q.take_lease(store, endpoint.id, "a", 30)
    assert q.claimable(store, 0) == []  # (nothing due before time 0)
    assert not q.take_lease(store, endpoint.id, "b", 30)  # held by "a"
    assert q.take_lease(store, endpoint.id, "a", 30)  # renewed by its holder
    q.update_endpoint(store, "hook", enabled=False)
    assert q.enabled_ids(store) == set() and not q.any_enabled(store)
    assert q.redeliver_one(store, endpoint.id, q.events_after(store, 0, 1)[0].uid)
    assert q.endpoint_by_id(store, endpoint.id).redo


def test_settle_records_each_outcome(store: MetadataStore) -> None:
    """settle's compiled statements (one per set of columns it writes) on every path."""
    assert q.insert_endpoint(store, "hook", "api", json.dumps({"url": "http://x/"}),
                             "whsec_x", True)
    endpoint = q.endpoint_row(store, "hook")
    for n in range(3):
        with store.write() as conn:
            store.events.emit(conn, f"test.e{n}", repository="a/b")
    first, second, third = (e.id for e in q.events_after(store, endpoint.cursor, 10))
    assert not q.settle(store, endpoint.id, "nobody", event_id=first, redelivery=False,
                        attempt=None, advance_to=third, success=True)  # no lease: nothing
    assert q.endpoint_by_id(store, endpoint.id).cursor == endpoint.cursor
    assert q.take_lease(store, endpoint.id, "t", 30)
    failed = {"attempt": 1, "outcome": "failed", "status_code": 500, "latency_ms": 2.0,
              "error": None, "response": "no", "last_event_id": second, "events": 2}
    assert q.settle(store, endpoint.id, "t", event_id=first, redelivery=False,
                    attempt=failed, advance_to=None, success=False, next_attempt_at=5.0,
                    batch_end=second)
    row = q.endpoint_by_id(store, endpoint.id)
    assert (row.failures, row.head_attempts, row.batch_end, row.next_attempt_at,
            row.cursor) == (1, 1, second, 5.0, endpoint.cursor)
    dead = {**failed, "attempt": 2, "outcome": "dead"}
    assert q.settle(store, endpoint.id, "t", event_id=first, redelivery=False,
                    attempt=dead, advance_to=second, success=False, batch_end=second)
    row = q.endpoint_by_id(store, endpoint.id)
    assert (row.failures, row.head_attempts, row.batch_end, row.cursor) == (2, 0, None, second)
    assert q.settle(store, endpoint.id, "t", event_id=third, redelivery=False,
                    attempt=None, advance_to=third, success=None)  # filtered out: skipped
    assert q.endpoint_by_id(store, endpoint.id).cursor == third
    assert q.redeliver_one(store, endpoint.id, q.events_after(store, 0, 1)[0].uid)
    assert q.settle(store, endpoint.id, "t", event_id=first, redelivery=True,
                    attempt={"attempt": 1, "outcome": "delivered", "status_code": 204,
                             "latency_ms": 1.0, "error": None, "response": ""},
                    advance_to=None, success=True)
    row = q.endpoint_by_id(store, endpoint.id)
    assert not row.redo and row.failures == 0 and row.cursor == third
    assert not q.settle(store, endpoint.id, "t", event_id=third, redelivery=False,
                        attempt=dict(failed, attempt=3), advance_to=None, success=False,
                        disable="3 consecutive failed deliveries")
    row = q.endpoint_by_id(store, endpoint.id)
    assert not row.enabled and row.lease_token is None
    assert row.disabled_reason == "3 consecutive failed deliveries"
    log = q.deliveries(store, endpoint.id, 10, None)
    assert [d.outcome for d in log] == ["failed", "delivered", "dead", "failed"]
    assert (log[-1].last_event_id, log[-1].events, log[1].events) == (second, 2, None)
