"""Events reach real receivers: signed, in order, filtered, retried, never lost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import requests

from tests.events.conftest import secret
from tests.events.receivers import Receiver, make_ca_and_cert, verify
from tests.helpers import make_image, put_manifest
from tests.server import children_of


def push(url: str, repo: str, tag: str) -> str:
    r = put_manifest(url, repo, tag, make_image(url, repo, layers=1))
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def actions(bodies: list[dict]) -> list[tuple]:
    return [(b["action"], b["repository"], tuple(b["tags"])) for b in bodies]


def test_a_push_arrives_signed_with_every_field(start_registry, receiver):
    key = secret()
    # batch_max_events 1: each event alone, the body is the event and webhook-id its id.
    registry = start_registry([{"name": "ci", "url": receiver.url, "secret": key,
                                "batch_max_events": 1}])
    digest = push(registry.url, "team/app", "v1")
    bodies = receiver.wait_for(lambda b: any(e["action"] == "manifest.pushed" for e in b))
    pushed = next(b for b in bodies if b["action"] == "manifest.pushed")
    assert pushed["repository"] == "team/app" and pushed["digest"] == digest
    assert pushed["tags"] == ["v1"] and pushed["size"] > 0
    assert pushed["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert pushed["actor"]["kind"] == "anonymous" and pushed["actor"]["address"] == "127.0.0.1"
    assert pushed["request_id"] and pushed["instance"] and pushed["id"]
    # the first manifest push creates the repository (blob uploads only link blobs)
    assert [b["action"] for b in bodies].index("repository.created") < [
        b["action"] for b in bodies].index("manifest.pushed")
    for request in receiver.requests:
        assert verify(key, request["headers"], request["body"])
        assert request["headers"]["webhook-id"] == json.loads(request["body"])["id"]
    tampered = dict(receiver.requests[0]["headers"])
    assert not verify(key, tampered, receiver.requests[0]["body"] + b" ")
    assert not verify(secret(), tampered, receiver.requests[0]["body"])


def test_tag_moves_deletes_and_pulls_are_events_but_heads_are_not(start_registry, receiver):
    registry = start_registry([{"name": "all", "url": receiver.url}])
    url = registry.url
    first = push(url, "moves", "latest")
    second = push(url, "moves", "latest")
    manifest_url = f"{url}/v2/moves/manifests/latest"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    for _ in range(3):
        assert requests.head(manifest_url, headers=accept).status_code == 200
    for _ in range(2):
        assert requests.get(manifest_url, headers=accept).status_code == 200
    assert requests.delete(manifest_url).status_code == 202
    assert requests.delete(f"{url}/v2/moves/manifests/{first}").status_code == 202
    assert requests.delete(f"{url}/v2/moves/manifests/{second}").status_code == 202
    bodies = receiver.wait_for(lambda b: {"manifest.deleted", "repository.emptied",
                                          "manifest.pulled"} <= {e["action"] for e in b})
    moved = [b for b in bodies if b["action"] == "tag.moved"]
    assert len(moved) == 1 and moved[0]["digest"] == second
    assert moved[0]["details"]["from_digest"] == first
    deleted_tag = next(b for b in bodies if b["action"] == "tag.deleted")
    assert deleted_tag["tags"] == ["latest"] and deleted_tag["digest"] == second
    deleted = [b["digest"] for b in bodies if b["action"] == "manifest.deleted"]
    assert deleted == [first, second]
    assert [b["action"] for b in bodies][-1] == "repository.emptied" or any(
        b["action"] == "manifest.pulled" for b in bodies[-2:])
    pulls = [b for b in bodies if b["action"] == "manifest.pulled"]
    assert sum(p["details"]["count"] for p in pulls) == 2  # two GETs, no HEAD
    assert pulls[0]["tags"] == ["latest"] and pulls[0]["digest"] == second


def test_a_registry_killed_before_delivery_delivers_after_restart_once(
        start_registry, receiver):
    # The first registry writes events but does not deliver (events.deliver: false):
    # it is killed with the event committed and not sent.
    writer = start_registry([{"name": "ci", "url": receiver.url}], deliver=False)
    digest = push(writer.url, "crash", "v1")
    time.sleep(1.0)
    assert receiver.requests == []
    workers = children_of(writer.proc.pid)
    writer.proc.send_signal(signal.SIGKILL)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    writer.proc.wait()
    restarted = start_registry([{"name": "ci", "url": receiver.url}])
    bodies = receiver.wait_for(lambda b: any(e["action"] == "manifest.pushed" for e in b))
    time.sleep(2.0)  # anything sent twice would have arrived by now
    bodies = receiver.bodies()
    pushed = [b for b in bodies if b["action"] == "manifest.pushed"]
    assert len(pushed) == 1 and pushed[0]["digest"] == digest
    assert len({b["id"] for b in bodies}) == len(bodies)
    assert restarted.proc.poll() is None


def test_a_receiver_away_for_a_while_gets_every_event_in_order(start_registry, receiver):
    registry = start_registry([{"name": "flaky", "url": receiver.url,
                                "actions": ["manifest.pushed"]}])
    receiver.stop()  # connection refused: every attempt fails, with backoff
    tags = [f"t{i}" for i in range(8)]
    for tag in tags:
        push(registry.url, "order", tag)
    time.sleep(3.0)  # several failed attempts on the first event
    receiver.start()
    bodies = receiver.wait_for(lambda b: len(b) >= len(tags))
    time.sleep(1.0)
    bodies = receiver.bodies()
    assert [b["tags"][0] for b in bodies] == tags  # in commit order, each once
    log = requests.get(f"{registry.url}/api/v1/events/endpoints/flaky/deliveries",
                       params={"outcome": "failed"}).json()["items"]
    assert log and all(entry["error"] for entry in log)


def test_a_slow_and_a_failing_endpoint_do_not_delay_the_others(start_registry, receiver):
    slow = Receiver(mode="slow", delay=8.0)
    failing = Receiver(mode="fail")
    try:
        registry = start_registry([
            {"name": "slow", "url": slow.url, "timeout_seconds": 30},
            # One event per request: each event's 3 failed attempts count towards the 5.
            {"name": "failing", "url": failing.url, "batch_max_events": 1},
            {"name": "fine", "url": receiver.url, "actions": ["manifest.pushed"]},
        ], max_attempts=3, disable_after_failures=5)
        for i in range(3):
            push(registry.url, "isolated", f"v{i}")
        started = time.monotonic()
        receiver.wait_for(lambda b: len(b) == 3, timeout=60)
        # The slow receiver is still on its first or second event (8 s each).
        assert len(slow.requests) <= 2 or time.monotonic() - started > 16
        # The failing one: 3 attempts per event, dead letters, then disabled after 5.
        endpoint = _wait_endpoint(registry.url, "failing", lambda e: not e["enabled"])
        assert endpoint["disabled_reason"] == "5 consecutive failed deliveries"
        dead = requests.get(f"{registry.url}/api/v1/events/endpoints/failing/deliveries",
                            params={"outcome": "dead"}).json()["items"]
        assert dead and all(d["status_code"] == 500 for d in dead)
        metrics = requests.get(f"{registry.url}/metrics").text
        assert 'registry_event_endpoint_enabled{endpoint="failing"} 0.0' in metrics
        assert 'registry_event_endpoints_disabled_total{endpoint="failing"} 1.0' in metrics
        assert 'registry_event_deliveries_total{endpoint="fine",outcome="delivered"} 3.0' \
            in metrics
    finally:
        slow.stop()
        failing.stop()


def _wait_endpoint(url: str, name: str, predicate, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        endpoint = requests.get(f"{url}/api/v1/events/endpoints/{name}").json()
        if predicate(endpoint):
            return endpoint
        time.sleep(0.2)
    raise AssertionError(f"endpoint never got there: {endpoint}")


def test_tls_receiver_is_verified_against_the_configured_ca(start_registry, tmp_path):
    ca, cert, key = make_ca_and_cert(tmp_path)
    tls = Receiver(tls=(cert, key))
    try:
        registry = start_registry([
            {"name": "trusted", "url": tls.url, "ca_file": str(ca),
             "actions": ["manifest.pushed"]},
            {"name": "untrusted", "url": tls.url, "actions": ["manifest.pushed"]},
        ])
        push(registry.url, "tls", "v1")
        tls.wait_for(lambda b: len(b) == 1)
        log = _wait_log(registry.url, "untrusted")
        assert log[0]["outcome"] == "failed" and "SSL" in log[0]["error"]
        assert len(tls.requests) == 1  # the system CAs don't know this one
    finally:
        tls.stop()


def _wait_log(url: str, name: str, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = requests.get(f"{url}/api/v1/events/endpoints/{name}/deliveries").json()["items"]
        if items:
            return items
        time.sleep(0.2)
    raise AssertionError("no delivery attempt logged")


def test_filters_and_formats(start_registry, tmp_path):
    plain, cloud, distribution = Receiver(), Receiver(), Receiver()
    try:
        registry = start_registry([
            {"name": "team-only", "url": plain.url, "repositories": ["team/*"],
             "actions": ["manifest.*"], "media_types": ["application/vnd.oci.image.*"]},
            {"name": "cloud", "url": cloud.url, "format": "cloudevents",
             "actions": ["manifest.pushed"]},
            {"name": "distribution", "url": distribution.url, "format": "distribution"},
        ])
        url = registry.url
        push(url, "other/app", "v1")
        digest = push(url, "team/app", "v1")
        extra = put_manifest(url, "team/app", "v2", make_image(url, "team/app", layers=1))
        assert extra.status_code == 201
        plain.wait_for(lambda b: len(b) == 2)
        cloud.wait_for(lambda b: len(b) == 3)
        # Batched: a Distribution envelope holds several events (its receivers expect that).
        distribution.wait_for(lambda b: sum(len(e["events"]) for e in b) == 3)
        time.sleep(1.0)
        assert {(b["repository"], b["tags"][0]) for b in plain.bodies()} == {
            ("team/app", "v1"), ("team/app", "v2")}
        event = next(b for b in cloud.bodies() if b["data"]["digest"] == digest)
        assert event["specversion"] == "1.0" and event["type"] == "io.ociregistry.manifest.pushed"
        assert event["datacontenttype"] == "application/json" and event["id"] and event["source"]
        assert event["subject"] == f"team/app@{digest}"
        assert cloud.requests[0]["headers"]["content-type"] == \
            "application/cloudevents-batch+json"
        # Distribution: its media type, an envelope of events, its field names; only the
        # actions it knows (push, pull, delete, mount): repository.created is not sent.
        request = distribution.requests[-1]
        assert request["headers"]["content-type"] == \
            "application/vnd.docker.distribution.events.v1+json"
        pushes = [e for b in distribution.bodies() for e in b["events"]]
        assert {e["action"] for e in pushes} == {"push"}
        one = next(e for e in pushes if e["target"]["digest"] == digest)
        assert one["target"]["repository"] == "team/app" and one["target"]["tag"] == "v1"
        assert one["target"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert one["target"]["size"] == one["target"]["length"] > 0
        assert one["request"]["method"] == "PUT" and one["request"]["addr"] == "127.0.0.1"
        assert one["source"]["instanceID"] and one["timestamp"].endswith("Z") and one["id"]
    finally:
        for r in (plain, cloud, distribution):
            r.stop()


def test_configuration_file_endpoints_are_synchronised_and_read_only(start_registry, receiver,
                                                                     tmp_path):
    key = secret()
    registry = start_registry([{"name": "from-file", "url": receiver.url, "secret": key}])
    api = f"{registry.url}/api/v1/events/endpoints"
    shown = requests.get(f"{api}/from-file").json()
    assert shown["source"] == "config" and shown["secret_hint"] == key[:10] + "…"
    r = requests.patch(f"{api}/from-file", json={"url": "http://127.0.0.1:9/"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    assert requests.delete(f"{api}/from-file").status_code == 409
    r = requests.patch(f"{api}/from-file", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    registry.stop()
    # Restarted with another file: the old endpoint goes, the new one comes.
    registry = start_registry([{"name": "renamed", "url": receiver.url, "format": "cloudevents"}])
    listed = requests.get(f"{registry.url}/api/v1/events/endpoints").json()["items"]
    names = [e["name"] for e in listed]
    assert names == ["renamed"]
    tested = requests.post(f"{registry.url}/api/v1/events/endpoints/renamed/test").json()
    assert tested["delivered"] is True
