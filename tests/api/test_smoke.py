import json

import requests

from tests.helpers import OCI_MANIFEST, make_image, put_manifest, sha256


def test_base_endpoint_answers_with_api_version(registry):
    r = requests.get(registry.url + "/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_push_and_pull_an_image(registry, repo):
    manifest = make_image(registry.url, repo)
    body = json.dumps(manifest).encode()
    r = put_manifest(registry.url, repo, "v1", body)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    r = requests.get(f"{registry.url}/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["Content-Type"] == OCI_MANIFEST
    for layer in manifest["layers"]:
        r = requests.get(f"{registry.url}/v2/{repo}/blobs/{layer['digest']}")
        assert r.status_code == 200
        assert sha256(r.content) == layer["digest"]
