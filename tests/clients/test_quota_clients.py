"""skopeo and podman show a quota refusal to their user: DENIED with the namespace, its
usage and its limit, for a layer (blob upload) and for the manifest."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.clients.clitools import docker_ref
from tests.quotas import support as s


@pytest.fixture
def quota(registry):
    made: list[int] = []

    def make(limit: int) -> str:
        namespace = f"cq{uuid.uuid4().hex[:8]}"
        made.append(s.create_quota(s.admin_url(registry), f"{namespace}/**", limit)["id"])
        return namespace

    yield make
    for quota_id in made:
        s.delete_quota(s.admin_url(registry), quota_id)


def _blob_bytes(image) -> int:
    return sum(len(data) for data in image.blobs().values())


def test_skopeo_shows_a_refused_layer(skopeo, registry, quota, oci_image):
    namespace = quota(_blob_bytes(oci_image.image) // 2)
    error = skopeo.fails("copy", "--dest-tls-verify=false", oci_image.ref,
                         docker_ref(registry.host, f"{namespace}/app", "v1"))
    assert f"quota exceeded for namespace {namespace}/**" in error.stderr, error
    assert "would exceed the limit" in error.stderr


def test_skopeo_shows_a_refused_manifest(skopeo, registry, repo, quota, oci_image):
    # What skopeo pushes, measured on a repository without a quota.
    skopeo.copy(oci_image.ref, docker_ref(registry.host, repo, "v1"))
    raw = skopeo.raw(docker_ref(registry.host, repo, "v1"))
    manifest = json.loads(raw)
    blobs = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    namespace = quota(blobs + len(raw) - 1)  # room for every blob, not for the manifest
    error = skopeo.fails("copy", "--dest-tls-verify=false", oci_image.ref,
                         docker_ref(registry.host, f"{namespace}/app", "v1"))
    assert f"quota exceeded for namespace {namespace}/**" in error.stderr, error
    assert "manifest" in error.stderr.lower()


def test_podman_shows_a_refused_push(skopeo, podman, registry, repo, quota, oci_image,
                                     tmp_path):
    skopeo.copy(oci_image.ref, docker_ref(registry.host, repo, "v1"))
    podman.pull(f"{registry.host}/{repo}:v1")
    namespace = quota(_blob_bytes(oci_image.image) // 2)
    error = podman.fails("push", "--tls-verify=false", "--signature-policy", podman.policy,
                         f"{registry.host}/{repo}:v1",
                         f"{registry.host}/{namespace}/app:v1")
    assert f"quota exceeded for namespace {namespace}/**" in error.stderr, error
