"""Pulling through the mirror from a real upstream (this registry, anonymous)."""

from __future__ import annotations

import json
import os
import threading

import requests

from tests.helpers import OCI_MANIFEST, assert_error, make_image, push_blob, put_manifest, sha256
from tests.mirror.support import upstream_requests

ACCEPT = {"Accept": ", ".join([
    "application/vnd.oci.image.index.v1+json", OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json"])}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def push_image(url: str, repo: str, tag: str, layers: int = 2) -> tuple[dict, str]:
    manifest = make_image(url, repo, layers=layers)
    r = put_manifest(url, repo, tag, manifest)
    assert r.status_code == 201, r.text
    return manifest, r.headers["Docker-Content-Digest"]


def get(url: str, path: str, **kwargs) -> requests.Response:
    return requests.get(f"{url}/v2/{path}", headers=ACCEPT, timeout=120, **kwargs)


def test_manifest_by_tag_and_digest_and_blobs(mirror, upstream, upstream_log, name):
    manifest, digest = push_image(upstream.url, name, "1.0")
    blob_gets = upstream_requests(mirror, "up")
    r = get(mirror.url, f"up/{name}/manifests/1.0")
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == digest == sha256(r.content)
    assert r.headers["X-Registry-Mirror"] == "miss"
    r = get(mirror.url, f"up/{name}/manifests/{digest}")
    assert r.status_code == 200 and r.headers["X-Registry-Mirror"] == "hit"
    for blob in [manifest["config"], *manifest["layers"]]:
        for expected in ("miss", "hit"):
            r = get(mirror.url, f"up/{name}/blobs/{blob['digest']}")
            assert r.status_code == 200, r.text
            assert sha256(r.content) == blob["digest"] and len(r.content) == blob["size"]
            assert r.headers["X-Registry-Mirror"] == expected
    # The upstream saw one GET of the manifest and one of each blob: nothing more.
    assert upstream_log.count("GET", f"/v2/{name}/manifests/") == 1
    assert upstream_log.count("HEAD", f"/v2/{name}/manifests/") == 0
    assert upstream_requests(mirror, "up") - blob_gets == 3
    # Stored under the local name like any repository.
    tags = requests.get(f"{mirror.url}/v2/up/{name}/tags/list", timeout=30).json()
    assert tags == {"name": f"up/{name}", "tags": ["1.0"]}


def test_tag_within_ttl_never_asks_upstream(mirror, upstream, upstream_log, name):
    push_image(upstream.url, name, "v1")
    for _ in range(5):
        r = get(mirror.url, f"up/{name}/manifests/v1")
        assert r.status_code == 200
    r = requests.head(f"{mirror.url}/v2/up/{name}/manifests/v1", headers=ACCEPT, timeout=30)
    assert r.status_code == 200 and r.headers["X-Registry-Mirror"] == "hit"
    assert upstream_log.count("GET", f"/v2/{name}/manifests/") == 1
    assert upstream_log.count("HEAD", f"/v2/{name}/manifests/") == 0


def test_after_the_ttl_one_head_revalidates(mirror, upstream, upstream_log, name):
    push_image(upstream.url, name, "v1")
    results = [get(mirror.url, f"short/{name}/manifests/v1").headers["X-Registry-Mirror"]
               for _ in range(3)]
    assert results == ["miss", "revalidated", "revalidated"]
    assert upstream_log.count("GET", f"/v2/{name}/manifests/") == 1
    assert upstream_log.count("HEAD", f"/v2/{name}/manifests/") == 2


def test_a_tag_moved_upstream_gives_the_new_digest_after_the_ttl(mirror, upstream, name):
    _, first = push_image(upstream.url, name, "latest")
    assert get(mirror.url, f"short/{name}/manifests/latest").headers[
        "Docker-Content-Digest"] == first
    _, second = push_image(upstream.url, name, "latest")
    r = get(mirror.url, f"short/{name}/manifests/latest")
    assert r.headers["Docker-Content-Digest"] == second != first
    assert r.headers["X-Registry-Mirror"] == "miss"
    # Within a long TTL the mirror keeps what it checked (no upstream question).
    assert get(mirror.url, f"up/{name}/manifests/latest").headers[
        "Docker-Content-Digest"] == second
    _, third = push_image(upstream.url, name, "latest")
    assert get(mirror.url, f"up/{name}/manifests/latest").headers[
        "Docker-Content-Digest"] == second != third


def test_an_upstream_404_is_cached_negatively(mirror, upstream_log, name):
    blob_gets = upstream_requests(mirror, "up")
    for _ in range(3):
        assert_error(get(mirror.url, f"up/{name}/manifests/nope"), 404, "MANIFEST_UNKNOWN")
    missing = sha256(os.urandom(16))
    for _ in range(2):
        assert_error(get(mirror.url, f"up/{name}/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    requests_seen = (upstream_log.count("HEAD", f"/v2/{name}/manifests/")
                     + upstream_log.count("GET", f"/v2/{name}/manifests/"))
    assert requests_seen == 1
    assert upstream_requests(mirror, "up") - blob_gets == 1


def test_ns_selects_the_upstream_and_is_echoed(mirror, upstream, upstream_log, name):
    _, digest = push_image(upstream.url, name, "v1")
    r = get(mirror.url, f"{name}/manifests/v1?ns=docker.example")
    assert r.status_code == 200, r.text
    assert r.headers["OCI-Namespace"] == "docker.example"
    assert r.headers["Docker-Content-Digest"] == digest
    # The same content as by prefix: a hit, one upstream GET in all.
    r = get(mirror.url, f"up/{name}/manifests/v1")
    assert r.headers["X-Registry-Mirror"] == "hit"
    assert upstream_log.count("GET", f"/v2/{name}/manifests/") == 1


def test_an_unknown_ns_is_an_error_and_no_connection(mirror, upstream_log, name):
    before = len(upstream_log.lines())
    assert_error(get(mirror.url, f"{name}/manifests/v1?ns=evil.example"), 404, "NAME_UNKNOWN")
    assert_error(get(mirror.url, f"{name}/blobs/{sha256(b'x')}?ns=169.254.169.254"),
                 404, "NAME_UNKNOWN")
    for hostile in ("evil.example/../x", "a b", "http://x", "", "x" * 300, "@evil"):
        r = get(mirror.url, f"{name}/manifests/v1", params={"ns": hostile})
        assert r.status_code in (400, 404), (hostile, r.status_code)
        assert r.json()["errors"][0]["code"] in ("NAME_INVALID", "NAME_UNKNOWN")
    upstream_log.settle()
    new = [line for line in upstream_log.lines()[before:] if name in line]
    assert new == []


def test_the_default_upstream_takes_bare_names(mirror, upstream, name):
    single = f"img{name[-10:]}"
    _, digest = push_image(upstream.url, f"library/{single}", "v1")
    # Docker's registry-mirrors sends library/<name>; a single component gets library/ too.
    for path in (f"library/{single}", single, f"hub/{single}", f"hub/library/{single}"):
        r = get(mirror.url, f"{path}/manifests/v1")
        assert r.status_code == 200, (path, r.text)
        assert r.headers["Docker-Content-Digest"] == digest
    tags = requests.get(f"{mirror.url}/v2/hub/library/{single}/tags/list", timeout=30)
    assert tags.json()["tags"] == ["v1"]
    # Pushes of bare names stay local repositories, read back locally.
    local = f"local/{name}"
    _, local_digest = push_image(mirror.url, local, "mine")
    r = get(mirror.url, f"{local}/manifests/mine")
    assert r.headers["Docker-Content-Digest"] == local_digest
    assert "X-Registry-Mirror" not in r.headers


def test_pushes_into_a_mirrored_namespace_are_refused(mirror, name):
    for method, path in (("PUT", f"up/{name}/manifests/v1"), ("POST", f"up/{name}/blobs/uploads/"),
                         ("DELETE", f"up/{name}/manifests/v1"),
                         ("POST", f"{name}/blobs/uploads/?ns=docker.example")):
        r = requests.request(method, f"{mirror.url}/v2/{path}", data=b"{}", timeout=30,
                             headers={"Content-Type": OCI_MANIFEST})
        assert_error(r, 403, "DENIED")
        assert "mirrors upstream" in r.json()["errors"][0]["message"]


def test_hostile_names_and_references(mirror, upstream_log):
    cases = {
        "up/manifests/v1": (404, "NAME_UNKNOWN"),  # the prefix alone
        "up/a/%2E%2E/etc/manifests/v1": (400, "NAME_INVALID"),
        "up/UPPER/manifests/v1": (400, "NAME_INVALID"),
        "up/a/manifests/..%2F..": (404, "UNSUPPORTED"),
        "up/a/manifests/-bad": (400, "TAG_INVALID"),
        "up/a/blobs/sha256:zz": (400, "DIGEST_INVALID"),
        "up/a/manifests/sha256:12": (400, "DIGEST_INVALID"),
        "up/" + "a" * 260 + "/manifests/v1": (400, "NAME_INVALID"),
    }
    for path, (status, code) in cases.items():
        r = requests.get(f"{mirror.url}/v2/{path}", timeout=30)
        assert r.status_code == status, (path, r.status_code, r.text)
        if code:
            assert r.json()["errors"][0]["code"] == code


def test_an_index_is_stored_as_is_and_children_come_on_demand(mirror, upstream, upstream_log,
                                                               name):
    children = []
    for arch in ("amd64", "arm64"):
        _, digest = push_image(upstream.url, name, f"only-{arch}", layers=1)
        size = len(get(upstream.url, f"{name}/manifests/{digest}").content)
        children.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                         "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": children}).encode()
    r = put_manifest(upstream.url, name, "multi", index, OCI_INDEX)
    assert r.status_code == 201, r.text
    before = upstream_log.count("GET", f"/v2/{name}/manifests/")
    r = get(mirror.url, f"up/{name}/manifests/multi")
    assert r.status_code == 200 and r.content == index
    assert upstream_log.count("GET", f"/v2/{name}/manifests/") == before + 1  # no child yet
    r = get(mirror.url, f"up/{name}/manifests/{children[1]['digest']}")
    assert r.status_code == 200 and sha256(r.content) == children[1]["digest"]
    assert upstream_log.count("GET", f"/v2/{name}/manifests/") == before + 2


def test_concurrent_misses_fetch_a_blob_once(mirror, upstream, upstream_log, name):
    data = os.urandom(24 << 20)
    digest = push_blob(upstream.url, name, data)
    blob_gets = upstream_requests(mirror, "up")
    results: list[tuple[int, str]] = []

    def pull() -> None:
        r = requests.get(f"{mirror.url}/v2/up/{name}/blobs/{digest}", timeout=300)
        results.append((r.status_code, sha256(r.content)))

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [(200, digest)] * 4
    assert upstream_requests(mirror, "up") - blob_gets == 1


def test_a_client_hanging_up_does_not_abort_the_fill(mirror, upstream, upstream_log, name):
    data = os.urandom(16 << 20)
    digest = push_blob(upstream.url, name, data)
    with requests.get(f"{mirror.url}/v2/up/{name}/blobs/{digest}", stream=True,
                      timeout=60) as r:
        assert r.headers["X-Registry-Mirror"] == "miss"
        assert int(r.headers["Content-Length"]) == len(data)
        next(r.iter_content(65536))
    # The fill goes on: the blob arrives whole (polled through HEAD, answered
    # locally once committed, upstream until then).
    r = None
    for _ in range(600):
        r = requests.get(f"{mirror.url}/v2/up/{name}/blobs/{digest}", stream=True, timeout=60)
        hit = r.headers.get("X-Registry-Mirror") == "hit"
        if hit:
            assert sha256(r.content) == digest
            break
        r.close()
        threading.Event().wait(0.1)
    assert r is not None and r.headers.get("X-Registry-Mirror") == "hit"


def test_tag_lists_come_from_upstream_paginated(mirror, upstream, name):
    for tag in ("c", "a", "b"):
        push_image(upstream.url, name, tag, layers=1)
    r = get(mirror.url, f"up/{name}/tags/list")
    assert r.json() == {"name": f"up/{name}", "tags": ["a", "b", "c"]}
    r = get(mirror.url, f"up/{name}/tags/list?n=2")
    assert r.json()["tags"] == ["a", "b"]
    assert r.headers["Link"] == f'</v2/up/{name}/tags/list?n=2&last=b>; rel="next"'
    assert get(mirror.url, f"up/{name}/tags/list?n=2&last=b").json()["tags"] == ["c"]
    r = get(mirror.url, f"{name}/tags/list?ns=docker.example")
    assert r.json()["tags"] == ["a", "b", "c"] and r.headers["OCI-Namespace"] == "docker.example"


def test_freshness_survives_a_restart(mirror, upstream, upstream_log, name):
    _, digest = push_image(upstream.url, name, "v1")
    assert get(mirror.url, f"up/{name}/manifests/v1").headers["X-Registry-Mirror"] == "miss"
    mirror.stop()
    mirror.start()
    r = get(mirror.url, f"up/{name}/manifests/v1")
    assert r.headers["X-Registry-Mirror"] == "hit" and r.headers["Docker-Content-Digest"] == digest
    assert upstream_log.count("(GET|HEAD)", f"/v2/{name}/manifests/") == 1
