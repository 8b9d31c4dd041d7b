"""Online GC while pushes run: no image that was pushed successfully ever loses a blob.

Several threads push images (blobs, then the manifest) in a loop while another
thread runs POST /v2/gc (grace period 0, so every blob not yet referenced is fair
game) over and over. A manifest push may lose the race (MANIFEST_BLOB_UNKNOWN:
the sweep deleted a blob before the manifest referenced it); that is the
transaction deciding, and the client pushes again. What must never happen is a
201 for a manifest whose blobs or children are then gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256
from tests.server import RegistryProcess

PUSHERS = 3
IMAGES_PER_PUSHER = 15
MAX_GC_RUNS = 500  # a bound; the GC thread stops as soon as the pushers are done
SHARED_LAYER = b"a layer every image uses " * 200  # the same blob pushed again and again
ATTEMPTS = 5  # pushes of one image before giving up on it
TIMEOUT = 120


@dataclass
class Pushed:
    repo: str
    tag: str
    digest: str
    media_type: str
    body: bytes
    blobs: list[str]
    children: list[tuple[str, bytes, list[str]]] = field(default_factory=list)


@dataclass
class Outcome:
    pushed: list[Pushed] = field(default_factory=list)
    lost_races: int = 0
    gave_up: int = 0
    errors: list[str] = field(default_factory=list)
    gc_runs: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def server(tmp_path: Path):
    env = {"OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0"}
    proc = RegistryProcess(tmp_path / "data", env=env).start()
    yield proc
    proc.stop()


def _blob(session: requests.Session, url: str, repo: str, data: bytes, chunked: bool) -> str:
    digest = sha256(data)
    if not chunked:
        r = session.post(
            f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data,
            timeout=TIMEOUT,
        )
        assert r.status_code == 201, r.text
        return digest
    r = session.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    location = url + location if location.startswith("/") else location
    half = len(data) // 2
    r = session.patch(
        location, data=data[:half], timeout=TIMEOUT,
        headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{half - 1}"},
    )
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    location = url + location if location.startswith("/") else location
    r = session.put(location, params={"digest": digest}, data=data[half:], timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    return digest


def _image(session: requests.Session, url: str, repo: str, n: int) -> tuple[bytes, list[str]]:
    # an orphan each time, so every sweep has real work to do
    _blob(session, url, repo, os.urandom(512), chunked=False)
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()})
    own_layer = os.urandom(2048)
    blobs = [
        _blob(session, url, repo, config.encode(), chunked=False),
        _blob(session, url, repo, SHARED_LAYER, chunked=False),
        _blob(session, url, repo, own_layer, chunked=n % 2 == 1),
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": blobs[0], "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": blobs[1], "size": len(SHARED_LAYER)},
            {"mediaType": OCI_LAYER, "digest": blobs[2], "size": len(own_layer)},
        ],
    }
    return json.dumps(manifest).encode(), blobs


def _put(session: requests.Session, url: str, repo: str, ref: str, body: bytes, media_type: str):
    return session.put(
        f"{url}/v2/{repo}/manifests/{ref}", data=body, headers={"Content-Type": media_type},
        timeout=TIMEOUT,
    )


def _lost_race(r: requests.Response) -> bool:
    if r.status_code != 400:
        return False
    return "MANIFEST_BLOB_UNKNOWN" in [e["code"] for e in r.json()["errors"]]


def push_once(session: requests.Session, url: str, repo: str, n: int) -> Pushed | None:
    """Push image ``n`` (blobs, then manifest); None when a sweep won the race."""
    tag = f"v{n}"
    body, blobs = _image(session, url, repo, n)
    if n % 3 != 2:
        r = _put(session, url, repo, tag, body, OCI_MANIFEST)
        if _lost_race(r):
            return None
        assert r.status_code == 201, f"manifest push: {r.status_code} {r.text}"
        return Pushed(repo, tag, r.headers["Docker-Content-Digest"], OCI_MANIFEST, body, blobs)
    # An index over an untagged child pushed by digest: a GC with delete_untagged
    # may take the child before the index is in, never after.
    child_digest = sha256(body)
    r = _put(session, url, repo, child_digest, body, OCI_MANIFEST)
    if _lost_race(r):
        return None
    assert r.status_code == 201, f"child push: {r.status_code} {r.text}"
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child_digest, "size": len(body),
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }).encode()
    r = _put(session, url, repo, tag, index, OCI_INDEX)
    if _lost_race(r):
        return None
    assert r.status_code == 201, f"index push: {r.status_code} {r.text}"
    return Pushed(repo, tag, r.headers["Docker-Content-Digest"], OCI_INDEX, index, [],
                  [(child_digest, body, blobs)])


def pusher(url: str, worker: int, outcome: Outcome) -> None:
    session = requests.Session()
    repo = f"race/pusher{worker}"
    try:
        for n in range(IMAGES_PER_PUSHER):
            # Like a client would: when the push loses the race, push it all again.
            for _attempt in range(ATTEMPTS):
                pushed = push_once(session, url, repo, n)
                with outcome.lock:
                    if pushed is None:
                        outcome.lost_races += 1
                    else:
                        outcome.pushed.append(pushed)
                if pushed is not None:
                    break
            else:
                with outcome.lock:
                    outcome.gave_up += 1
    except Exception as exc:  # reported by the test, with the thread that failed
        with outcome.lock:
            outcome.errors.append(f"pusher {worker}: {exc!r}")


def collector(url: str, done: threading.Event, outcome: Outcome) -> None:
    session = requests.Session()
    try:
        for run in range(MAX_GC_RUNS):
            if done.is_set():
                return
            params = {"delete_untagged": "true"} if run % 2 else {}
            r = session.post(f"{url}/v2/gc", params=params, timeout=300)
            assert r.status_code == 200, r.text
            with outcome.lock:
                outcome.gc_runs.append(r.json())
    except Exception as exc:
        with outcome.lock:
            outcome.errors.append(f"gc: {exc!r}")


def run_race(
    collect: Callable[[threading.Event, Outcome], None], push_urls: list[str]
) -> Outcome:
    """One collector thread against one pusher per URL, until the pushers are done."""
    outcome = Outcome()
    done = threading.Event()
    gc_thread = threading.Thread(target=collect, args=(done, outcome))
    pushers = [threading.Thread(target=pusher, args=(url, i, outcome))
               for i, url in enumerate(push_urls)]
    gc_thread.start()
    for thread in pushers:
        thread.start()
    for thread in pushers:
        thread.join()
    done.set()
    gc_thread.join()
    return outcome


def check_pulls(url: str, pushed: Pushed) -> None:
    accept = {"Accept": f"{OCI_MANIFEST},{OCI_INDEX}"}
    for ref in (pushed.tag, pushed.digest):
        r = requests.get(f"{url}/v2/{pushed.repo}/manifests/{ref}", headers=accept)
        assert r.status_code == 200, (pushed.repo, ref, r.text)
        assert r.content == pushed.body
        assert r.headers["Docker-Content-Digest"] == pushed.digest
    blobs = list(pushed.blobs)
    for child_digest, child_body, child_blobs in pushed.children:
        r = requests.get(f"{url}/v2/{pushed.repo}/manifests/{child_digest}", headers=accept)
        assert r.status_code == 200, (pushed.repo, child_digest, r.text)
        assert hashlib.sha256(r.content).hexdigest() == child_digest.split(":")[1]
        assert r.content == child_body
        blobs += child_blobs
    for digest in blobs:
        r = requests.get(f"{url}/v2/{pushed.repo}/blobs/{digest}")
        assert r.status_code == 200, (pushed.repo, digest, r.text)
        assert sha256(r.content) == digest


def test_concurrent_push_and_gc_never_lose_a_pushed_blob(server):
    outcome = run_race(lambda done, out: collector(server.url, done, out),
                       [server.url] * PUSHERS)

    assert not outcome.errors, outcome.errors
    # The sweeps ran alongside the pushes and really deleted things.
    assert outcome.gc_runs
    # One more full collection after the dust settles must not take anything either.
    r = requests.post(f"{server.url}/v2/gc", params={"delete_untagged": "true"}, timeout=300)
    assert r.status_code == 200
    outcome.gc_runs.append(r.json())
    assert sum(run["blobs_deleted"] for run in outcome.gc_runs) > 0

    attempts = PUSHERS * IMAGES_PER_PUSHER
    assert len(outcome.pushed) + outcome.gave_up == attempts
    assert outcome.pushed, "no push succeeded"
    print(
        f"\n{len(outcome.pushed)} images pushed, {outcome.lost_races} manifest pushes lost the "
        f"race to a sweep ({outcome.gave_up} given up), {len(outcome.gc_runs)} GC runs, "
        f"{sum(r['blobs_deleted'] for r in outcome.gc_runs)} blobs collected"
    )
    for pushed in outcome.pushed:
        check_pulls(server.url, pushed)
    tags = {}
    for pushed in outcome.pushed:
        tags.setdefault(pushed.repo, set()).add(pushed.tag)
    for repo, expected in tags.items():
        listed = requests.get(f"{server.url}/v2/{repo}/tags/list").json()["tags"]
        assert set(listed) == expected
