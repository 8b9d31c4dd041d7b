"""Batched deliveries to real receivers: several events in one request, in commit
order, signed once; a failing receiver gets the very same batch again; dead letters
and the delivery log stay right per event.

Events are written by a registry that does not deliver (events.deliver: false), then
a delivering one starts on the same data: every event is pending at once, so the
batches the receivers see do not depend on the machine's speed."""

from __future__ import annotations

import json
import time

import requests

from tests.events.conftest import secret
from tests.events.receivers import Receiver, unbatch, verify
from tests.helpers import make_image, put_manifest


def push(url: str, repo: str, tag: str) -> str:
    r = put_manifest(url, repo, tag, make_image(url, repo, layers=1))
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def pending_then_deliver(start_registry, endpoints, tags, **events):
    """Push ``tags`` with delivery off, then restart delivering: (registry, digests)."""
    writer = start_registry(endpoints, deliver=False, **events)
    digests = [push(writer.url, "batch/app", tag) for tag in tags]
    writer.stop()
    return start_registry(endpoints, **events), digests


def metric(url: str, line_start: str) -> float:
    for line in requests.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {line_start}")


def test_a_batch_is_one_signed_request_with_its_events_in_commit_order(start_registry,
                                                                       receiver):
    key, cloud_key = secret(), secret()
    cloud = Receiver()
    tags = [f"v{i}" for i in range(5)]
    try:
        registry, digests = pending_then_deliver(start_registry, [
            {"name": "plain", "url": receiver.url, "secret": key,
             "actions": ["manifest.pushed"]},
            {"name": "cloud", "url": cloud.url, "secret": cloud_key, "format": "cloudevents",
             "actions": ["manifest.pushed"]},
        ], tags)
        receiver.wait_for(lambda b: len(b) >= len(tags))
        cloud.wait_for(lambda b: len(b) >= len(tags))
        time.sleep(1.0)  # anything sent twice would have arrived by now
        for got, secret_of, kind in ((receiver, key, "application/json"),
                                     (cloud, cloud_key, "application/cloudevents-batch+json")):
            assert len(got.requests) == 1  # five events, one request
            request = got.requests[0]
            assert request["headers"]["content-type"] == kind
            # The batch's own id, signed once over the whole body: an independent check.
            assert request["headers"]["webhook-id"].startswith("batch_")
            assert verify(secret_of, request["headers"], request["body"])
            assert not verify(secret_of, request["headers"], request["body"] + b" ")
        plain = receiver.bodies()
        assert set(json.loads(receiver.requests[0]["body"])) == {"events"}
        assert [e["tags"][0] for e in plain] == tags  # commit order
        assert [e["digest"] for e in plain] == digests
        sequences = [e["sequence"] for e in plain]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(tags)
        clouds = cloud.bodies()
        assert [c["data"]["tags"][0] for c in clouds] == tags
        assert all(c["specversion"] == "1.0" and c["id"] == c["data"]["id"] for c in clouds)

        # The delivery log: one entry for the request, naming its first and last event;
        # each event's status is found from its own id.
        api = f"{registry.url}/api/v1/events/endpoints/plain/deliveries"
        log = requests.get(api, timeout=30).json()["items"]
        assert len(log) == 1 and log[0]["outcome"] == "delivered" and log[0]["events"] == 5
        assert log[0]["event_id"] == plain[0]["id"]
        assert log[0]["last_event_id"] == plain[-1]["id"]
        middle = requests.get(api, params={"event_id": plain[2]["id"]}, timeout=30).json()
        assert [e["id"] for e in middle["items"]] == [log[0]["id"]]
        other = requests.get(f"{registry.url}/api/v1/events/endpoints/cloud/deliveries",
                             params={"event_id": plain[2]["id"]}, timeout=30).json()["items"]
        assert len(other) == 1 and other[0]["id"] != log[0]["id"]
        # Metrics count events, and the batch sizes.
        delivered = 'registry_event_deliveries_total{endpoint="plain",outcome="delivered"}'
        assert metric(registry.url, delivered) == 5.0
        assert metric(registry.url, 'registry_event_batch_size_count{endpoint="plain"}') == 1.0
        assert metric(registry.url, 'registry_event_batch_size_sum{endpoint="plain"}') == 5.0
    finally:
        cloud.stop()


def test_a_failing_receiver_gets_the_same_batch_until_it_takes_it(start_registry, receiver):
    key = secret()
    receiver.mode = "fail"
    endpoint = {"name": "flaky", "url": receiver.url, "secret": key,
                "actions": ["manifest.pushed"]}
    registry, _ = pending_then_deliver(start_registry, [endpoint], ["a", "b", "c"])
    deadline = time.monotonic() + 90
    while len(receiver.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(receiver.requests) >= 2, "the batch was not retried"
    # Events committed while the batch is being retried do not join it.
    push(registry.url, "batch/app", "d")
    push(registry.url, "batch/app", "e")
    time.sleep(1.5)
    receiver.mode = "ok"
    receiver.wait_for(lambda b: [e["tags"][0] for e in b].count("e") >= 1)
    time.sleep(1.0)
    with receiver.lock:
        sent = list(receiver.requests)
    first = sent[0]
    retried = [r for r in sent if r["headers"]["webhook-id"] == first["headers"]["webhook-id"]]
    assert len(retried) >= 3  # two or more failures, then the success
    for request in retried:  # the same events, the same body, each signed afresh
        assert request["body"] == first["body"]
        assert verify(key, request["headers"], request["body"])
    assert [e["tags"][0] for e in unbatch(first)] == ["a", "b", "c"]
    later = sent[len(retried):]
    assert sent[:len(retried)] == retried  # retries came first: order holds
    assert later and all(r["headers"]["webhook-id"] != first["headers"]["webhook-id"]
                         for r in later)
    assert [e["tags"][0] for r in later for e in unbatch(r)] == ["d", "e"]
    log = requests.get(f"{registry.url}/api/v1/events/endpoints/flaky/deliveries",
                       timeout=30).json()["items"]
    failed = [e for e in log if e["outcome"] == "failed"]
    assert len(failed) == len(retried) - 1 and all(e["events"] == 3 for e in failed)
    assert [e["attempt"] for e in reversed(failed)] == list(range(1, len(failed) + 1))
    assert 'registry_event_deliveries_total{endpoint="flaky",outcome="failed"} ' \
        f'{3.0 * len(failed)}' in requests.get(f"{registry.url}/metrics", timeout=30).text


def test_a_batch_that_keeps_failing_is_dead_as_a_whole_and_can_be_redelivered(
        start_registry, receiver):
    receiver.mode = "fail"
    endpoint = {"name": "dead", "url": receiver.url, "actions": ["manifest.pushed"]}
    registry, _ = pending_then_deliver(start_registry, [endpoint], ["x", "y"], max_attempts=2)
    api = f"{registry.url}/api/v1/events/endpoints/dead"
    deadline = time.monotonic() + 90
    dead: list = []
    while not dead and time.monotonic() < deadline:
        dead = requests.get(f"{api}/deliveries", params={"outcome": "dead"},
                            timeout=30).json()["items"]
        time.sleep(0.2)
    assert len(dead) == 1 and dead[0]["events"] == 2 and dead[0]["attempt"] == 2
    assert requests.get(api, timeout=30).json()["pending"] == 0  # the cursor moved past
    events = requests.get(f"{registry.url}/api/v1/events", params={"action": "manifest.pushed"},
                          timeout=30).json()["items"]
    second = next(e for e in events if e["tags"] == ["y"])
    status = requests.get(f"{api}/deliveries", params={"event_id": second["id"]},
                          timeout=30).json()["items"]
    assert [e["outcome"] for e in status] == ["dead", "failed"]
    # Redeliver the dead letter: it arrives alone, in the endpoint's batch form.
    receiver.mode = "ok"
    count = len(receiver.requests)
    r = requests.post(f"{api}/redeliver", json={"event_id": second["id"]}, timeout=30)
    assert r.status_code == 200 and r.json() == {"queued": 1}
    again = receiver.wait_for(lambda b: len(receiver.requests) > count)
    assert [e["id"] for e in unbatch(receiver.requests[count])] == [second["id"]]
    assert again[-1]["id"] == second["id"]
