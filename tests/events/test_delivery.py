"""Events reach real receivers: signed, in order, filtered, retried, never lost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import requests

from tests.events.conftest import secret
from tests.events.receivers import Receiver, make_ca_and_cert, verify  # noqa: F401
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
    registry = start_registry([{"name": "ci", "url": receiver.url, "secret": key}])
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
