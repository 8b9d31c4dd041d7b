"""A manifest's descriptor sizes must match what the registry stores.

A client trusts a descriptor's size (it sizes buffers and progress bars by it,
and some stop reading there): a manifest whose layer or config says another
size than the blob the registry holds would hand every puller a lie, so it is
refused with MANIFEST_INVALID naming the digest. Blobs a manifest may leave out
(foreign layers with URLs, a subject) keep their rules.
"""

from __future__ import annotations

import json
import os

import pytest
import requests

from tests.api.manifest_support import _docker_image, _push
from tests.helpers import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    assert_error,
    make_image,
    push_blob,
    put_manifest,
    sha256,
)


def _refused(response, digest: str) -> None:
    assert_error(response, 400, "MANIFEST_INVALID")
    detail = response.json()["errors"][0]["detail"]
    assert detail["digest"] == digest, detail


@pytest.mark.parametrize("delta", [-1, 1, 10**12])
def test_oci_layer_with_a_wrong_size_is_refused(registry, repo, delta):
    doc = make_image(registry.url, repo, layers=2)
    layer = doc["layers"][1]
    layer["size"] += delta
    _refused(put_manifest(registry.url, repo, "wrong", doc), layer["digest"])
    assert requests.head(f"{registry.url}/v2/{repo}/manifests/wrong").status_code == 404


def test_oci_config_with_a_wrong_size_is_refused(registry, repo):
    doc = make_image(registry.url, repo, layers=1)
    doc["config"]["size"] = 0
    _refused(put_manifest(registry.url, repo, "wrong", doc), doc["config"]["digest"])


def test_docker_schema2_layer_with_a_wrong_size_is_refused(registry, repo):
    doc = _docker_image(registry, repo)
    doc["layers"][0]["size"] += 1
    body = json.dumps(doc).encode()
    r = put_manifest(registry.url, repo, "wrong", body, DOCKER_MANIFEST)
    _refused(r, doc["layers"][0]["digest"])


def test_docker_schema2_config_with_a_wrong_size_is_refused(registry, repo):
    doc = _docker_image(registry, repo)
    doc["config"]["size"] -= 1
    r = put_manifest(registry.url, repo, "wrong", json.dumps(doc).encode(), DOCKER_MANIFEST)
    _refused(r, doc["config"]["digest"])


def test_one_blob_listed_twice_with_two_sizes_is_refused(registry, repo):
    doc = make_image(registry.url, repo, layers=1)
    doc["layers"].append({**doc["layers"][0], "size": doc["layers"][0]["size"] + 1})
    _refused(put_manifest(registry.url, repo, "twice", doc), doc["layers"][0]["digest"])


def test_index_child_with_a_wrong_size_is_refused(registry, repo):
    child = json.dumps(make_image(registry.url, repo, layers=1)).encode()
    _push(registry, repo, sha256(child), child, OCI_MANIFEST)
    for media_type, child_type in ((OCI_INDEX, OCI_MANIFEST),
                                   (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)):
        body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": [
            {"mediaType": child_type, "digest": sha256(child), "size": len(child) + 7},
        ]}).encode()
        _refused(put_manifest(registry.url, repo, "idx", body, media_type), sha256(child))


def test_right_sizes_are_accepted(registry, repo):
    doc = make_image(registry.url, repo, layers=3)
    doc["layers"].append(dict(doc["layers"][0]))  # the same layer twice, same size
    body = json.dumps(doc).encode()
    assert _push(registry, repo, "ok", body, OCI_MANIFEST) == sha256(body)


def test_a_missing_blob_is_still_blob_unknown_whatever_its_size(registry, repo):
    doc = make_image(registry.url, repo, layers=1)
    doc["layers"].append({"mediaType": OCI_LAYER, "digest": sha256(os.urandom(8)), "size": 3})
    assert_error(put_manifest(registry.url, repo, "x", doc), 400, "MANIFEST_BLOB_UNKNOWN")


def test_foreign_layer_size_is_not_checked(registry, repo):
    """A foreign layer is not in the registry: nothing to compare its size with."""
    doc = make_image(registry.url, repo, layers=1)
    doc["layers"].insert(0, {
        "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "digest": sha256(b"windows base layer"), "size": 987654321,
        "urls": ["https://example.invalid/layer.tar.gz"],
    })
    body = json.dumps(doc).encode()
    assert _push(registry, repo, "foreign", body, OCI_MANIFEST) == sha256(body)


def test_foreign_layer_that_was_pushed_is_not_checked_either(registry, repo):
    # It may be pulled from its URLs, whose bytes the registry does not hold.
    doc = make_image(registry.url, repo, layers=1)
    data = os.urandom(100)
    doc["layers"].insert(0, {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": push_blob(registry.url, repo, data), "size": 5000,
        "urls": ["https://example.invalid/layer"],
    })
    body = json.dumps(doc).encode()
    assert _push(registry, repo, "foreign", body, OCI_MANIFEST) == sha256(body)


def test_absent_subject_size_is_not_checked(registry, repo):
    doc = make_image(registry.url, repo, layers=1)
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": sha256(b"elsewhere"), "size": 1}
    body = json.dumps(doc).encode()
    assert _push(registry, repo, sha256(body), body, OCI_MANIFEST) == sha256(body)

