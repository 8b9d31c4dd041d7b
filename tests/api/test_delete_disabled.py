"""A registry with deletes disabled answers 405 UNSUPPORTED and keeps everything."""

from __future__ import annotations

import json

import pytest
import requests

from tests.helpers import OCI_MANIFEST, assert_error, make_image, put_manifest, sha256
from tests.server import RegistryProcess


@pytest.fixture(scope="module")
def readonly_deletes(tmp_path_factory):
    server = RegistryProcess(
        tmp_path_factory.mktemp("nodelete") / "data",
        env={"OCIREGISTRY_DELETE_ENABLED": "false"},
    ).start()
    yield server
    server.stop()


@pytest.fixture
def image(readonly_deletes):
    url = readonly_deletes.url
    repo = "keep/me"
    manifest = make_image(url, repo)
    body = json.dumps(manifest).encode()
    r = put_manifest(url, repo, "v1", body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    return url, repo, manifest, sha256(body)


def test_manifest_delete_by_tag_is_405_unsupported(image):
    url, repo, _, digest = image
    assert_error(requests.delete(f"{url}/v2/{repo}/manifests/v1"), 405, "UNSUPPORTED")
    r = requests.get(f"{url}/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == digest


def test_manifest_delete_by_digest_is_405_unsupported(image):
    url, repo, _, digest = image
    assert_error(requests.delete(f"{url}/v2/{repo}/manifests/{digest}"), 405, "UNSUPPORTED")
    assert requests.get(f"{url}/v2/{repo}/manifests/{digest}").status_code == 200
    assert requests.get(f"{url}/v2/{repo}/tags/list").json()["tags"] == ["v1"]


def test_blob_delete_is_405_unsupported(image):
    url, repo, manifest, _ = image
    for desc in [manifest["config"], *manifest["layers"]]:
        r = requests.delete(f"{url}/v2/{repo}/blobs/{desc['digest']}")
        assert_error(r, 405, "UNSUPPORTED")
        blob = requests.get(f"{url}/v2/{repo}/blobs/{desc['digest']}")
        assert blob.status_code == 200
        assert sha256(blob.content) == desc["digest"]


def test_pushes_and_upload_cancel_still_work(readonly_deletes):
    url = readonly_deletes.url
    r = requests.post(f"{url}/v2/other/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    location = url + location if location.startswith("/") else location
    # Cancelling an upload deletes no content, so it stays allowed.
    assert requests.delete(location).status_code == 204
