"""Manifests: every format, byte-exact storage and headers, validation."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import requests

from tests.api.manifest_support import (
    _assert_pullable,
    _docker_image,
    _get,
    _push,
    _tags,
    _url,
)
from tests.helpers import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    assert_error,
    make_image,
    push_blob,
    push_empty_config,
    put_manifest,
    sha256,
    sha512,
    sign_schema1,
)


# -- formats ----------------------------------------------------------------------
def test_oci_image_manifest(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    r = put_manifest(registry.url, repo, "v1", body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    location = r.headers["Location"]
    assert location.endswith(f"/v2/{repo}/manifests/{sha256(body)}")
    _assert_pullable(registry, repo, "v1", body, OCI_MANIFEST)


def test_oci_index(registry, repo):
    children = []
    for arch in ("amd64", "arm64"):
        child = json.dumps(make_image(registry.url, repo, layers=1)).encode()
        _push(registry, repo, sha256(child), child, OCI_MANIFEST)
        children.append({"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": len(child),
                         "platform": {"os": "linux", "architecture": arch}})
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
                       "annotations": {"org.example": "x"}}).encode()
    assert _push(registry, repo, "multi", body, OCI_INDEX) == sha256(body)
    _assert_pullable(registry, repo, "multi", body, OCI_INDEX)


def test_docker_schema2_and_manifest_list(registry, repo):
    image = json.dumps(_docker_image(registry, repo), indent=3).encode()
    assert _push(registry, repo, "img", image, DOCKER_MANIFEST) == sha256(image)
    _assert_pullable(registry, repo, "img", image, DOCKER_MANIFEST)
    listing = json.dumps({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": sha256(image),
                       "size": len(image),
                       "platform": {"architecture": "arm64", "os": "linux"}}],
    }, indent=3).encode()
    assert _push(registry, repo, "list", listing, DOCKER_MANIFEST_LIST) == sha256(listing)
    _assert_pullable(registry, repo, "list", listing, DOCKER_MANIFEST_LIST)


def _schema1(registry, repo: str, tag: str) -> dict[str, Any]:
    layers = [os.urandom(512), os.urandom(512)]
    digests = [push_blob(registry.url, repo, data) for data in layers]
    return {
        "schemaVersion": 1,
        "name": repo,
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": [{"blobSum": d} for d in digests],
        "history": [{"v1Compatibility": json.dumps({"id": os.urandom(32).hex()})}
                    for _ in digests],
    }


def test_docker_schema1_unsigned(registry, repo):
    body = json.dumps(_schema1(registry, repo, "old"), indent=3).encode()
    assert _push(registry, repo, "old", body, DOCKER_SCHEMA1) == sha256(body)
    _assert_pullable(registry, repo, "old", body, DOCKER_SCHEMA1)


def test_docker_schema1_signed_digest_excludes_the_signatures(registry, repo):
    signed, canonical = sign_schema1(_schema1(registry, repo, "signed"))
    assert b'"signatures"' in signed and b'"signatures"' not in canonical
    r = put_manifest(registry.url, repo, "signed", signed, DOCKER_SCHEMA1_SIGNED)
    assert r.status_code == 201, r.text
    digest = r.headers["Docker-Content-Digest"]
    assert digest == sha256(canonical)
    assert digest != sha256(signed)
    for reference in ("signed", digest):
        got = _get(registry, repo, reference)
        assert got.status_code == 200, got.text
        # The signed bytes come back exactly as pushed, under the canonical digest.
        assert got.content == signed
        assert got.headers["Content-Type"] == DOCKER_SCHEMA1_SIGNED
        assert got.headers["Docker-Content-Digest"] == digest
    # Pushing by that digest works too.
    assert _push(registry, repo, digest, signed, DOCKER_SCHEMA1_SIGNED) == digest


def test_schema1_with_a_missing_layer_is_manifest_blob_unknown(registry, repo):
    doc = _schema1(registry, repo, "x")
    doc["fsLayers"].append({"blobSum": sha256(os.urandom(8))})
    doc["history"].append({"v1Compatibility": "{}"})
    r = put_manifest(registry.url, repo, "x", json.dumps(doc).encode(), DOCKER_SCHEMA1)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")


def test_artifact_with_artifact_type_and_empty_config(registry, repo):
    payload = b"signature bytes"
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature.v1",
        "config": push_empty_config(registry.url, repo),
        "layers": [{"mediaType": "application/octet-stream", "size": len(payload),
                    "digest": push_blob(registry.url, repo, payload)}],
    }).encode()
    assert _push(registry, repo, "sig", body, OCI_MANIFEST) == sha256(body)
    _assert_pullable(registry, repo, "sig", body, OCI_MANIFEST)


def test_artifact_with_a_custom_config_media_type(registry, repo):
    config = b'{"chart": "demo", "version": "1.0.0"}'
    chart = os.urandom(900)
    body = json.dumps({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                   "size": len(config), "digest": push_blob(registry.url, repo, config)},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                    "size": len(chart), "digest": push_blob(registry.url, repo, chart)}],
    }).encode()
    # No mediaType in the body: the Content-Type decides.
    assert _push(registry, repo, "1.0.0", body, OCI_MANIFEST) == sha256(body)
    _assert_pullable(registry, repo, "1.0.0", body, OCI_MANIFEST)


def test_artifact_without_layers(registry, repo):
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.empty",
        "config": push_empty_config(registry.url, repo),
        "layers": [],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }).encode()
    assert _push(registry, repo, "empty", body, OCI_MANIFEST) == sha256(body)


# -- storage and headers ----------------------------------------------------------
def test_manifest_is_stored_byte_for_byte(registry, repo):
    doc = make_image(registry.url, repo)
    # Odd whitespace, key order, escapes and a trailing newline: all kept.
    body = (
        '{\n\t"schemaVersion" :   2,\r\n  "layers": ' + json.dumps(doc["layers"], indent=7)
        + ',"config":' + json.dumps(doc["config"], separators=(",", ":"))
        + ', "mediaType": "' + OCI_MANIFEST + '", "annotations": {"n": "caf\\u00e9 \u00e9"}'
        + "   }\n\n"
    ).encode()
    digest = _push(registry, repo, "exact", body, OCI_MANIFEST)
    assert digest == sha256(body)
    for ref in ("exact", digest):
        r = _get(registry, repo, ref)
        assert r.content == body
        assert r.headers["Content-Length"] == str(len(body))


def test_head_by_tag_and_by_digest(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    digest = _push(registry, repo, "head", body, OCI_MANIFEST)
    for ref in ("head", digest):
        r = requests.head(_url(registry, repo, ref), headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
        assert r.content == b""
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Content-Length"] == str(len(body))
        assert r.headers["Content-Type"] == OCI_MANIFEST


def test_unknown_manifest_is_404_manifest_unknown(registry, repo):
    _push(registry, repo, "exists", json.dumps(make_image(registry.url, repo)).encode(),
          OCI_MANIFEST)
    assert_error(_get(registry, repo, "missing"), 404, "MANIFEST_UNKNOWN")
    assert_error(_get(registry, repo, sha256(b"nothing")), 404, "MANIFEST_UNKNOWN")
    assert requests.head(_url(registry, repo, "missing")).status_code == 404
    # A manifest of another repository is not visible here.
    other = repo + "-other"
    body = json.dumps(make_image(registry.url, other)).encode()
    digest = _push(registry, other, "t", body, OCI_MANIFEST)
    assert_error(_get(registry, repo, digest), 404, "MANIFEST_UNKNOWN")


def test_content_type_is_the_pushed_one_when_body_has_no_media_type(registry, repo):
    doc = _docker_image(registry, repo)
    del doc["mediaType"]
    body = json.dumps(doc).encode()
    _push(registry, repo, "nomt", body, DOCKER_MANIFEST)
    assert _get(registry, repo, "nomt").headers["Content-Type"] == DOCKER_MANIFEST


def test_accept_selects_the_default_platform_for_clients_without_index_support(registry, repo):
    amd64 = json.dumps(_docker_image(registry, repo)).encode()
    arm = json.dumps(_docker_image(registry, repo)).encode()
    _push(registry, repo, sha256(amd64), amd64, DOCKER_MANIFEST)
    _push(registry, repo, sha256(arm), arm, DOCKER_MANIFEST)
    listing = json.dumps({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": sha256(arm), "size": len(arm),
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": DOCKER_MANIFEST, "digest": sha256(amd64), "size": len(amd64),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }).encode()
    _push(registry, repo, "ml", listing, DOCKER_MANIFEST_LIST)
    r = _get(registry, repo, "ml", accept=DOCKER_MANIFEST)
    assert r.status_code == 200
    assert r.content == amd64
    assert r.headers["Docker-Content-Digest"] == sha256(amd64)
    # A client that accepts lists gets the list.
    r = _get(registry, repo, "ml", accept=f"{DOCKER_MANIFEST_LIST}, {DOCKER_MANIFEST}")
    assert r.content == listing


# -- validation -------------------------------------------------------------------
def test_push_by_digest_with_the_wrong_digest_is_digest_invalid(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    wrong = sha256(body + b" ")
    r = put_manifest(registry.url, repo, wrong, body, OCI_MANIFEST)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(_get(registry, repo, wrong), 404, "MANIFEST_UNKNOWN")
    assert_error(_get(registry, repo, sha256(body)), 404, "MANIFEST_UNKNOWN")


def test_push_by_digest_creates_no_tag(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    assert _push(registry, repo, sha256(body), body, OCI_MANIFEST) == sha256(body)
    assert _get(registry, repo, sha256(body)).content == body
    assert _tags(registry, repo) == []


def test_push_by_sha512_digest(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    r = put_manifest(registry.url, repo, sha512(body), body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha512(body)
    got = _get(registry, repo, sha512(body))
    assert got.status_code == 200
    assert got.content == body


def test_missing_layer_is_manifest_blob_unknown(registry, repo):
    doc = make_image(registry.url, repo)
    missing = sha256(os.urandom(16))
    doc["layers"].append({"mediaType": OCI_LAYER, "digest": missing, "size": 16})
    r = put_manifest(registry.url, repo, "broken", doc)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(_get(registry, repo, "broken"), 404, "MANIFEST_UNKNOWN")


def test_missing_config_is_manifest_blob_unknown(registry, repo):
    doc = make_image(registry.url, repo)
    doc["config"]["digest"] = sha256(os.urandom(16))
    assert_error(put_manifest(registry.url, repo, "broken", doc), 400, "MANIFEST_BLOB_UNKNOWN")


def test_blob_of_another_repository_is_manifest_blob_unknown(registry, repo):
    other = repo + "-src"
    doc = make_image(registry.url, other)
    # Nothing was pushed to ``repo`` itself: its layers are not visible there.
    assert_error(put_manifest(registry.url, repo, "x", doc), 400, "MANIFEST_BLOB_UNKNOWN")


def test_missing_child_of_an_index_is_manifest_blob_unknown(registry, repo):
    child = json.dumps(make_image(registry.url, repo)).encode()
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": len(child)},
    ]}).encode()
    r = put_manifest(registry.url, repo, "idx", body, OCI_INDEX)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    # Once the child is there the index is accepted.
    _push(registry, repo, sha256(child), child, OCI_MANIFEST)
    assert _push(registry, repo, "idx", body, OCI_INDEX) == sha256(body)


def test_missing_subject_is_allowed_and_answers_oci_subject(registry, repo):
    absent = json.dumps(make_image(registry.url, repo + "-elsewhere")).encode()
    subject = {"mediaType": OCI_MANIFEST, "digest": sha256(absent), "size": len(absent)}
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": push_empty_config(registry.url, repo),
        "layers": [],
        "subject": subject,
    }).encode()
    r = put_manifest(registry.url, repo, sha256(body), body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == subject["digest"]
    assert _get(registry, repo, sha256(body)).content == body


def test_manifest_without_subject_has_no_oci_subject(registry, repo):
    r = put_manifest(registry.url, repo, "plain", make_image(registry.url, repo))
    assert r.status_code == 201
    assert "OCI-Subject" not in r.headers


def test_non_distributable_layer_with_urls_need_not_be_pushed(registry, repo):
    doc = make_image(registry.url, repo, layers=1)
    foreign = sha256(b"windows base layer")
    doc["layers"].insert(0, {
        "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "digest": foreign, "size": 1234,
        "urls": ["https://example.invalid/layer.tar.gz"],
    })
    body = json.dumps(doc).encode()
    assert _push(registry, repo, "foreign", body, OCI_MANIFEST) == sha256(body)
    docker_doc = _docker_image(registry, repo)
    docker_doc["layers"].insert(0, {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": foreign, "size": 1234, "urls": ["https://example.invalid/layer"],
    })
    body = json.dumps(docker_doc).encode()
    assert _push(registry, repo, "foreign-docker", body, DOCKER_MANIFEST) == sha256(body)


def test_non_distributable_layer_without_urls_must_exist(registry, repo):
    doc = make_image(registry.url, repo, layers=1)
    doc["layers"].append({
        "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "digest": sha256(b"not pushed"), "size": 10,
    })
    assert_error(put_manifest(registry.url, repo, "x", doc), 400, "MANIFEST_BLOB_UNKNOWN")


def _valid(registry, repo) -> dict[str, Any]:
    return make_image(registry.url, repo, layers=1)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: b"{not json", id="invalid-json"),
        pytest.param(lambda d: b"[1, 2, 3]", id="not-an-object"),
        pytest.param(lambda d: b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(lambda d: {**d, "schemaVersion": 1}, id="schema-version-1"),
        pytest.param(lambda d: {**d, "schemaVersion": 3}, id="schema-version-3"),
        pytest.param(lambda d: {k: v for k, v in d.items() if k != "schemaVersion"},
                     id="no-schema-version"),
        pytest.param(lambda d: {**d, "config": "sha256:abc"}, id="config-not-object"),
        pytest.param(lambda d: {k: v for k, v in d.items() if k != "config"}, id="no-config"),
        pytest.param(lambda d: {**d, "layers": {}}, id="layers-not-list"),
        pytest.param(lambda d: {**d, "layers": [{**d["layers"][0], "digest": "sha256:xyz"}]},
                     id="bad-layer-digest"),
        pytest.param(lambda d: {**d, "layers": [{**d["layers"][0], "size": -1}]},
                     id="negative-size"),
        pytest.param(lambda d: {**d, "layers": [{**d["layers"][0], "size": "12"}]},
                     id="string-size"),
        pytest.param(lambda d: {**d, "layers": [{k: v for k, v in d["layers"][0].items()
                                                 if k != "mediaType"}]},
                     id="layer-without-media-type"),
        pytest.param(lambda d: {**d, "annotations": {"a": 1}}, id="annotation-not-string"),
        pytest.param(lambda d: {**d, "mediaType": OCI_INDEX}, id="media-type-mismatch"),
        pytest.param(lambda d: {**d, "subject": {"digest": "sha256:1"}}, id="bad-subject"),
    ],
)
def test_invalid_manifest_is_manifest_invalid(registry, repo, mutate):
    doc = _valid(registry, repo)
    body = mutate(doc)
    body = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = put_manifest(registry.url, repo, "bad", body, OCI_MANIFEST)
    assert_error(r, 400, "MANIFEST_INVALID")
    assert_error(_get(registry, repo, "bad"), 404, "MANIFEST_UNKNOWN")


def test_index_with_bad_entries_is_manifest_invalid(registry, repo):
    for manifests in ("nope", [{"mediaType": OCI_MANIFEST, "size": 3}], [42]):
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": manifests}).encode()
        assert_error(put_manifest(registry.url, repo, "idx", body, OCI_INDEX), 400,
                     "MANIFEST_INVALID")


def _padded_manifest(registry, repo, size: int) -> bytes:
    doc = make_image(registry.url, repo, layers=1)
    doc["annotations"] = {"pad": ""}
    base = len(json.dumps(doc).encode())
    doc["annotations"]["pad"] = "x" * (size - base)
    body = json.dumps(doc).encode()
    assert len(body) == size
    return body


def test_manifest_of_exactly_4_mib_is_accepted(registry, repo):
    body = _padded_manifest(registry, repo, 4 * 1024 * 1024)
    assert _push(registry, repo, "big", body, OCI_MANIFEST) == sha256(body)
    assert _get(registry, repo, "big").content == body


def test_manifest_over_4_mib_is_413(registry, repo):
    body = _padded_manifest(registry, repo, 4 * 1024 * 1024 + 1)
    r = put_manifest(registry.url, repo, "huge", body, OCI_MANIFEST)
    assert r.status_code == 413
    assert r.json()["errors"]
    assert_error(_get(registry, repo, "huge"), 404, "MANIFEST_UNKNOWN")


def test_manifest_over_4_mib_without_content_length_is_413(registry, repo):
    body = _padded_manifest(registry, repo, 4 * 1024 * 1024 + 100)
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    r = requests.put(_url(registry, repo, "huge"), data=chunks,
                     headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413
    assert_error(_get(registry, repo, "huge"), 404, "MANIFEST_UNKNOWN")
