"""Pushes over a namespace quota are refused with DENIED naming the namespace, its usage
and its limit, before the bytes are stored where the request says how many there are;
refused and failed uploads give their bytes back; deletes are never blocked; the same
content counts once per namespace. Runs on one registry and on the cluster."""

from __future__ import annotations

import os
import uuid

import pytest
import requests

from tests.quotas import support as s


@pytest.fixture
def namespace(registry):
    """A fresh namespace and a factory of quotas on it, deleted afterwards."""
    name = f"quota{uuid.uuid4().hex[:8]}"
    made: list[int] = []

    def quota(limit: int, warning: int | None = None, pattern: str | None = None) -> dict:
        created = s.create_quota(s.admin_url(registry), pattern or f"{name}/**", limit,
                                 warning)
        made.append(created["id"])
        return created

    yield name, quota
    for quota_id in made:
        s.delete_quota(s.admin_url(registry), quota_id)


def usage(registry, pattern: str) -> int:
    return s.quotas(s.admin_url(registry))[pattern]["usage"]


def assert_denied(r: requests.Response, pattern: str, used: int, limit: int) -> None:
    assert s.denied(r), (r.status_code, r.text)
    error = r.json()["errors"][0]
    assert pattern in error["message"] and "limit" in error["message"], error
    assert error["detail"]["namespace"] == pattern
    assert error["detail"]["usage"] == used and error["detail"]["limit"] == limit, error


def test_a_blob_over_the_limit_is_refused_before_it_is_stored(registry, namespace):
    name, quota = namespace
    quota(10_000)
    data = os.urandom(20_000)
    r = requests.post(f"{registry.url}/v2/{name}/app/blobs/uploads/",
                      params={"digest": s.sha256(data)}, data=data, timeout=s.TIMEOUT)
    assert_denied(r, f"{name}/**", 0, 10_000)
    assert requests.head(f"{registry.url}/v2/{name}/app/blobs/{s.sha256(data)}",
                         timeout=s.TIMEOUT).status_code == 404
    assert usage(registry, f"{name}/**") == 0


def test_a_chunk_with_a_length_over_the_limit_is_refused_unread(registry, namespace):
    name, quota = namespace
    quota(10_000)
    r = requests.post(f"{registry.url}/v2/{name}/app/blobs/uploads/", timeout=s.TIMEOUT)
    location = registry.url + r.headers["Location"]
    r = requests.patch(location, data=os.urandom(6_000), timeout=s.TIMEOUT)
    assert r.status_code == 202, r.text
    assert usage(registry, f"{name}/**") == 6_000  # an open upload counts
    r = requests.patch(registry.url + r.headers["Location"], data=os.urandom(6_000),
                       headers={"Content-Range": "6000-11999"}, timeout=s.TIMEOUT)
    assert_denied(r, f"{name}/**", 6_000, 10_000)
    assert usage(registry, f"{name}/**") == 6_000
    assert requests.delete(location, timeout=s.TIMEOUT).status_code == 204
    assert usage(registry, f"{name}/**") == 0  # a cancelled upload gives its bytes back


def test_a_streamed_chunk_over_the_limit_ends_its_upload(registry, namespace):
    name, quota = namespace
    quota(10_000)
    r = requests.post(f"{registry.url}/v2/{name}/app/blobs/uploads/", timeout=s.TIMEOUT)
    location = registry.url + r.headers["Location"]
    # No Content-Length: the bytes are taken, counted when saved, and refused there.
    r = requests.patch(location, data=iter([os.urandom(8_000), os.urandom(8_000)]),
                       timeout=s.TIMEOUT)
    assert_denied(r, f"{name}/**", 0, 10_000)
    assert requests.get(location, timeout=s.TIMEOUT).status_code == 404
    assert usage(registry, f"{name}/**") == 0


def test_a_manifest_over_the_limit_is_refused(registry, namespace):
    name, quota = namespace
    layer = os.urandom(3_000)
    config, manifest = s.image(b"m", [layer])
    blobs = len(config) + len(layer)
    created = quota(blobs + len(manifest) - 1)
    session = requests.Session()
    for blob in (config, layer):
        assert s.push_blob(session, registry.url, f"{name}/app", blob).status_code == 201
    assert usage(registry, f"{name}/**") == blobs
    r = session.put(f"{registry.url}/v2/{name}/app/manifests/v1", data=manifest,
                    headers={"Content-Type": s.OCI_MANIFEST}, timeout=s.TIMEOUT)
    assert_denied(r, f"{name}/**", blobs, blobs + len(manifest) - 1)
    assert session.get(f"{registry.url}/v2/{name}/app/manifests/v1",
                       timeout=s.TIMEOUT).status_code == 404
    assert usage(registry, f"{name}/**") == blobs
    # One byte more and it fits; the usage is then exactly the limit.
    r = session.patch(f"{s.admin_url(registry)}/api/v1/quotas/{created['id']}",
                      json={"limit": blobs + len(manifest)}, timeout=s.TIMEOUT)
    assert r.status_code == 200, r.text
    r = session.put(f"{registry.url}/v2/{name}/app/manifests/v1", data=manifest,
                    headers={"Content-Type": s.OCI_MANIFEST}, timeout=s.TIMEOUT)
    assert r.status_code == 201, r.text
    assert usage(registry, f"{name}/**") == blobs + len(manifest)


def test_content_counts_once_per_namespace_and_pushing_it_again_fits(registry, namespace):
    name, quota = namespace
    layer = os.urandom(5_000)
    quota(5_000)
    session = requests.Session()
    assert s.push_blob(session, registry.url, f"{name}/a", layer).status_code == 201
    # Full; the same bytes again, into another repository of the namespace: nothing new.
    for repo, mode in ((f"{name}/a", "monolithic"), (f"{name}/b/c", "monolithic")):
        assert s.push_blob(session, registry.url, repo, layer, mode).status_code == 201
    r = session.post(f"{registry.url}/v2/{name}/d/blobs/uploads/",
                     params={"mount": s.sha256(layer), "from": f"{name}/a"}, timeout=s.TIMEOUT)
    assert r.status_code == 201, r.text
    assert usage(registry, f"{name}/**") == 5_000
    # Something new does not fit; nor does a mount from outside the namespace.
    assert s.denied(s.push_blob(session, registry.url, f"{name}/a", b"x"))
    other = os.urandom(10)
    assert s.push_blob(session, registry.url, f"free{name}/x", other).status_code == 201
    r = session.post(f"{registry.url}/v2/{name}/a/blobs/uploads/",
                     params={"mount": s.sha256(other), "from": f"free{name}/x"},
                     timeout=s.TIMEOUT)
    assert_denied(r, f"{name}/**", 5_000, 5_000)


def test_deletes_are_never_blocked_and_give_bytes_back(registry, namespace):
    name, quota = namespace
    created = quota(1 << 20)
    layer = os.urandom(4_000)
    config, manifest = s.image(b"d", [layer])
    session = requests.Session()
    r = s.push_image(session, registry.url, f"{name}/app", "v1", config, [layer], manifest)
    assert r.status_code == 201, r.text
    digest = r.headers["Docker-Content-Digest"]
    full = len(config) + len(layer) + len(manifest)
    assert usage(registry, f"{name}/**") == full
    r = session.patch(f"{s.admin_url(registry)}/api/v1/quotas/{created['id']}", json={"limit": 10},
                      timeout=s.TIMEOUT)
    assert r.status_code == 200 and r.json()["usage"] > r.json()["limit"]
    assert session.delete(f"{registry.url}/v2/{name}/app/manifests/{digest}",
                          timeout=s.TIMEOUT).status_code == 202
    assert usage(registry, f"{name}/**") == len(config) + len(layer)  # still linked
    for blob in (config, layer):
        assert session.delete(f"{registry.url}/v2/{name}/app/blobs/{s.sha256(blob)}",
                              timeout=s.TIMEOUT).status_code == 202
    assert usage(registry, f"{name}/**") == 0


def test_nested_quotas_both_count_and_the_tighter_refuses(registry, namespace):
    name, quota = namespace
    quota(1 << 20)
    quota(3_000, pattern=f"{name}/small/*")
    session = requests.Session()
    assert s.push_blob(session, registry.url, f"{name}/big", os.urandom(4_000)).status_code \
        == 201
    r = s.push_blob(session, registry.url, f"{name}/small/x", os.urandom(4_000))
    assert_denied(r, f"{name}/small/*", 0, 3_000)
    assert s.push_blob(session, registry.url, f"{name}/small/x",
                       os.urandom(2_000)).status_code == 201
    kept = s.quotas(s.admin_url(registry))
    assert kept[f"{name}/**"]["usage"] == 6_000
    assert kept[f"{name}/small/*"]["usage"] == 2_000
