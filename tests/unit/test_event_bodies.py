"""Bodies assembled from per-event fragments (rendered once per format and shared by
a delivery process's endpoints) are byte for byte the documents the formats define:
the whole batch serialised at once, as receivers and signatures see it."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest

from ociregistry.events import formats
from ociregistry.events.bodies import Bodies
from ociregistry.events.delivery import request_body
from ociregistry.events.filters import EndpointSpec
from ociregistry.events.model import Event


def dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def events(count: int, seed: int = 3) -> list[Event]:
    rng = random.Random(seed)
    actions = ["manifest.pushed", "manifest.pulled", "manifest.deleted", "tag.moved",
               "tag.deleted", "blob.mounted", "repository.created", "gc.finished"]
    made = []
    for i in range(count):
        body = {"tags": rng.choice([[], ["v1"], ["a", "b", "c"]]),
                "size": rng.choice([None, 12, 9999]),
                "actor": rng.choice([None, {"kind": "user", "name": "bob", "address": "::1"}]),
                "request_id": rng.choice([None, "r1"]), "instance": rng.choice([None, "hôte"]),
                "details": rng.choice([{}, {"from_repository": "x/y", "n": [1, "é"]}])}
        made.append(Event(i + 1, f"uid-{i}", 1.7e9 + i * 0.37, rng.choice(actions),
                          rng.choice([None, "team/app"]), rng.choice([None, "sha256:ab"]),
                          rng.choice([None, "application/x"]), None, body))
    return made


def whole(batch: list[Event], fmt: str, batched: bool, url: str) -> bytes | None:
    """The document each format defines, serialised in one piece."""
    if fmt == "distribution":
        entries = [entry for e in batch
                   if (env := formats.distribution_envelope(e, url)) is not None
                   for entry in env["events"]]
        return dumps({"events": entries}) if entries else None
    docs = [formats.cloud_event(e) if fmt == "cloudevents" else e.as_dict() for e in batch]
    if not batched:
        return dumps(docs[0])
    return dumps(docs) if fmt == "cloudevents" else dumps({"events": docs})


@pytest.mark.parametrize("fmt", formats.FORMATS)
@pytest.mark.parametrize("url", ["", "https://registry.example:5000/"])
def test_assembled_bodies_are_the_whole_documents(fmt: str, url: str) -> None:
    evs = events(120)
    bodies = Bodies(url)
    for size in (1, 2, 7, 50):
        for start in range(0, len(evs), size):
            batch = evs[start:start + size]
            batched = size > 1
            expected = whole(batch, fmt, batched, url)
            assert formats.assemble([formats.fragment(e, fmt, url) for e in batch], fmt,
                                    batched) == expected
            assert bodies.body(batch, fmt, batched) == expected
            spec = EndpointSpec("e", "http://x/", fmt, {}, [], [], [], "", "", 10, size)
            if expected is not None:
                assert request_body(spec, batch, batched, url) == expected


def test_events_are_parsed_once_and_shared() -> None:
    bodies = Bodies()
    row = SimpleNamespace(id=7, uid="u7", created_at=1.0, action="manifest.pushed",
                          repository="a/b", digest="sha256:x", media_type=None,
                          artifact_type=None, body=json.dumps({"tags": ["v1"]}))
    first = bodies.event(row)
    assert bodies.event(row) is first  # a second endpoint gets the same object
    assert first.tags == ["v1"]
    reused = SimpleNamespace(**{**vars(row), "uid": "other", "body": "{}"})
    assert bodies.event(reused).uid == "other"  # an id handed out again is another event
    assert bodies.body([first], "plain", False) is bodies.body([first], "plain", False)


def test_the_cache_stays_bounded() -> None:
    bodies = Bodies(keep=10)
    for event in events(50):
        bodies.body([event], "plain", True)
        bodies.event(SimpleNamespace(id=event.id, uid=event.uid, created_at=1.0,
                                     action="x", repository=None, digest=None,
                                     media_type=None, artifact_type=None, body="{}"))
    assert len(bodies._events) == 10 and len(bodies._pieces) <= 30
