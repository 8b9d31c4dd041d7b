"""Upstream failures: stopped (stale copies served), 429 (stale, no retry storm),
5xx, and redirects to hosts nobody allowed."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import assert_error, push_blob, sha256
from tests.mirror.support import FrontServer, metric, start_mirror
from tests.mirror.test_pull_through import ACCEPT, push_image
from tests.server import RegistryProcess


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base: Path = tmp_path_factory.mktemp("failures")
    for part in ("up", "doomed"):
        (base / part).mkdir()
    upstream = RegistryProcess(base / "up" / "data", workers=1).start()
    doomed = RegistryProcess(base / "doomed" / "data", workers=1).start()
    front = FrontServer(upstream.url)
    redirector = FrontServer(upstream.url)
    target = FrontServer(upstream.url)  # where redirects lead: counts what reaches it
    cutter = FrontServer(upstream.url)
    redirector.mode = "redirect"
    redirector.redirect_to = f"http://localhost:{target.port}"
    mirror = start_mirror(base / "mirror", [
        {"name": "front", "url": front.url, "tag_ttl": 0, "max_stale": "1h"},
        {"name": "down", "url": doomed.url, "tag_ttl": 0, "max_stale": "1h",
         "connect_timeout": 2, "read_timeout": 5},
        {"name": "strict", "url": doomed.url, "tag_ttl": 0, "max_stale": 0,
         "connect_timeout": 2, "read_timeout": 5},
        {"name": "redir", "url": redirector.url},
        {"name": "cut", "url": cutter.url},
        {"name": "redirok", "url": redirector.url,
         "redirect_hosts": [f"localhost:{target.port}"]},
    ])
    yield {"upstream": upstream, "doomed": doomed, "front": front, "mirror": mirror,
           "redirector": redirector, "target": target, "cutter": cutter}
    mirror.stop()
    for server in (front, redirector, target, cutter):
        server.stop()
    for process in (upstream, doomed):
        if process.proc and process.proc.poll() is None:
            process.stop()


def pull(mirror: RegistryProcess, path: str) -> requests.Response:
    return requests.get(f"{mirror.url}/v2/{path}", headers=ACCEPT, timeout=120)


def test_upstream_stopped_serves_the_stale_copy(setup):
    mirror, doomed = setup["mirror"], setup["doomed"]
    name = f"team/stale{uuid.uuid4().hex[:8]}"
    manifest, digest = push_image(doomed.url, name, "v1")
    push_image(doomed.url, name, "never-pulled")
    for upstream in ("down", "strict"):
        assert pull(mirror, f"{upstream}/{name}/manifests/v1").status_code == 200
    layer = manifest["layers"][0]["digest"]
    assert pull(mirror, f"down/{name}/blobs/{layer}").status_code == 200
    doomed.stop()
    r = pull(mirror, f"down/{name}/manifests/v1")
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["X-Registry-Mirror"] == "stale"
    assert r.headers["Warning"] == '110 - "Response is Stale"'
    assert int(r.headers["X-Registry-Mirror-Stale-Seconds"]) >= 0
    # Digests and blobs never needed upstream.
    assert pull(mirror, f"down/{name}/manifests/{digest}").headers["X-Registry-Mirror"] == "hit"
    r = pull(mirror, f"down/{name}/blobs/{layer}")
    assert r.status_code == 200 and sha256(r.content) == layer
    # Nothing cached, or a copy older than max_stale: a clear error, never a 500.
    r = pull(mirror, f"down/{name}/manifests/never-pulled")
    assert_error(r, 503, "UNAVAILABLE")
    assert "Retry-After" in r.headers
    assert_error(pull(mirror, f"strict/{name}/manifests/v1"), 503, "UNAVAILABLE")
    assert_error(pull(mirror, f"down/{name}/blobs/{sha256(b'none')}"), 503, "UNAVAILABLE")
    log = mirror.log_path.read_text()
    assert f"serving stale down/{name}:v1" in log
    # The tag list: what the cache holds, marked stale.
    r = pull(mirror, f"down/{name}/tags/list")
    assert r.status_code == 200 and r.json()["tags"] == ["v1"]
    assert r.headers["X-Registry-Mirror"] == "stale"


def test_upstream_429_serves_stale_without_a_retry_storm(setup):
    mirror, front, upstream = setup["mirror"], setup["front"], setup["upstream"]
    name = f"team/limited{uuid.uuid4().hex[:8]}"
    _, digest = push_image(upstream.url, name, "v1")
    assert pull(mirror, f"front/{name}/manifests/v1").status_code == 200
    assert metric(mirror, "registry_mirror_upstream_ratelimit_remaining", upstream="front") == 42
    front.mode = "429"
    try:
        for _ in range(6):
            r = pull(mirror, f"front/{name}/manifests/v1")
            assert r.status_code == 200 and r.headers["X-Registry-Mirror"] == "stale"
            assert r.headers["Docker-Content-Digest"] == digest
        # One request met the 429; its Retry-After kept every worker from asking again.
        assert front.count("429") == 1
        r = pull(mirror, f"front/{name}/manifests/other")
        assert_error(r, 429, "TOOMANYREQUESTS")
        assert front.count("429") == 1
        state = requests.get(f"{mirror.url}/metrics", timeout=30).text
        assert 'registry_mirror_requests_total{kind="manifest",result="stale",upstream="front"}' \
            in state
    finally:
        front.mode = "proxy"


def test_a_redirect_to_a_host_nobody_allowed_is_refused(setup):
    mirror, upstream, target = setup["mirror"], setup["upstream"], setup["target"]
    name = f"team/redir{uuid.uuid4().hex[:8]}"
    data = os.urandom(4096)
    digest = push_blob(upstream.url, name, data)
    r = pull(mirror, f"redir/{name}/blobs/{digest}")
    assert_error(r, 503, "UNAVAILABLE")
    assert "not an allowed host" in r.json()["errors"][0]["message"]
    assert target.count(path_part=digest) == 0
    # Listed in redirect_hosts: followed, and the blob arrives verified.
    r = pull(mirror, f"redirok/{name}/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    assert target.count(path_part=digest) == 1


def test_upstream_stopping_mid_blob_commits_nothing(setup):
    mirror, front, upstream = setup["mirror"], setup["cutter"], setup["upstream"]
    name = f"team/cut{uuid.uuid4().hex[:8]}"
    data = os.urandom(3 << 20)
    digest = push_blob(upstream.url, name, data)
    front.mode = "truncate"
    try:
        received = b""
        with pytest.raises(requests.RequestException):
            with requests.get(f"{mirror.url}/v2/cut/{name}/blobs/{digest}", stream=True,
                              timeout=120) as r:
                assert r.status_code == 200
                for chunk in r.iter_content(65536):
                    received += chunk
        assert len(received) < len(data)
    finally:
        front.mode = "proxy"
    # Nothing of it was committed: the next pull fetches it again, whole and verified.
    r = pull(mirror, f"cut/{name}/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["X-Registry-Mirror"] == "miss"
    assert pull(mirror, f"cut/{name}/blobs/{digest}").headers["X-Registry-Mirror"] == "hit"
