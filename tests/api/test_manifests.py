"""Manifests: every format, byte-exact storage, validation, tags and deletion."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import requests

from tests.helpers import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_EMPTY,
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


def _url(registry, repo: str, ref: str) -> str:
    return f"{registry.url}/v2/{repo}/manifests/{ref}"


def _get(registry, repo: str, ref: str, accept: str | None = None) -> requests.Response:
    headers = {"Accept": accept} if accept else {
        "Accept": ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
                             DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1])
    }
    return requests.get(_url(registry, repo, ref), headers=headers)


def _push(registry, repo: str, ref: str, body: bytes, media_type: str, **kw: Any) -> str:
    r = put_manifest(registry.url, repo, ref, body, media_type, **kw)
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def _tags(registry, repo: str) -> list[str]:
    r = requests.get(f"{registry.url}/v2/{repo}/tags/list")
    assert r.status_code == 200, r.text
    return r.json()["tags"]


def _assert_pullable(registry, repo: str, ref: str, body: bytes, media_type: str) -> None:
    for reference in (ref, sha256(body)):
        r = _get(registry, repo, reference)
        assert r.status_code == 200, r.text
        assert r.content == body
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == sha256(body)


def _docker_image(registry, repo: str) -> dict[str, Any]:
    config = json.dumps({"architecture": "arm64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(2048)
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(config),
                   "digest": push_blob(registry.url, repo, config)},
        "layers": [{"mediaType": DOCKER_LAYER, "size": len(layer),
                    "digest": push_blob(registry.url, repo, layer)}],
    }


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


# -- tags -------------------------------------------------------------------------
def test_push_with_several_tags_answers_oci_tag(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    r = put_manifest(registry.url, repo, sha256(body), body, OCI_MANIFEST,
                     params=[("tag", "a"), ("tag", "b"), ("tag", "c-1.0")])
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    echoed = sorted(t.strip() for t in r.headers["OCI-Tag"].split(","))
    assert echoed == ["a", "b", "c-1.0"]
    assert _tags(registry, repo) == ["a", "b", "c-1.0"]
    for tag in ("a", "b", "c-1.0"):
        assert _get(registry, repo, tag).content == body


def test_push_with_ten_tags(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    tags = [f"t{i}" for i in range(10)]
    r = put_manifest(registry.url, repo, sha256(body), body, OCI_MANIFEST,
                     params=[("tag", t) for t in tags])
    assert r.status_code == 201, r.text
    assert sorted(_tags(registry, repo)) == sorted(tags)


def test_multi_tag_push_with_an_invalid_tag_stores_nothing(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    r = put_manifest(registry.url, repo, sha256(body), body, OCI_MANIFEST,
                     params=[("tag", "good"), ("tag", "-bad")])
    assert r.status_code == 400
    assert r.json()["errors"]
    assert _get(registry, repo, "good").status_code == 404


def test_pushing_a_tag_again_moves_it(registry, repo):
    first = json.dumps(make_image(registry.url, repo)).encode()
    second = json.dumps(make_image(registry.url, repo)).encode()
    _push(registry, repo, "latest", first, OCI_MANIFEST)
    _push(registry, repo, "latest", second, OCI_MANIFEST)
    assert _get(registry, repo, "latest").content == second
    # The old manifest is still there by digest, just untagged.
    assert _get(registry, repo, sha256(first)).content == first
    assert _tags(registry, repo) == ["latest"]


def test_pushing_the_same_manifest_twice_is_idempotent(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    assert _push(registry, repo, "x", body, OCI_MANIFEST) == sha256(body)
    assert _push(registry, repo, "x", body, OCI_MANIFEST) == sha256(body)
    assert _push(registry, repo, "y", body, OCI_MANIFEST) == sha256(body)
    assert _tags(registry, repo) == ["x", "y"]


@pytest.mark.parametrize("tag", ["-starts-with-dash", ".dot", "a" * 129, "has+plus", "sp ace"])
def test_invalid_tag_is_rejected(registry, repo, tag):
    body = json.dumps(make_image(registry.url, repo)).encode()
    r = put_manifest(registry.url, repo, tag, body, OCI_MANIFEST)
    assert r.status_code == 400, r.text
    assert set(c["code"] for c in r.json()["errors"]) & {"TAG_INVALID", "MANIFEST_INVALID"}
    assert _tags(registry, repo) == []


def test_longest_valid_tag_is_accepted(registry, repo):
    tag = "_" + "a" * 127
    body = json.dumps(make_image(registry.url, repo)).encode()
    _push(registry, repo, tag, body, OCI_MANIFEST)
    assert _tags(registry, repo) == [tag]


# -- deletion ---------------------------------------------------------------------
def test_delete_by_tag_removes_only_that_tag(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    digest = _push(registry, repo, "one", body, OCI_MANIFEST)
    _push(registry, repo, "two", body, OCI_MANIFEST)
    r = requests.delete(_url(registry, repo, "one"))
    assert r.status_code == 202
    assert_error(_get(registry, repo, "one"), 404, "MANIFEST_UNKNOWN")
    assert _get(registry, repo, "two").content == body
    assert _get(registry, repo, digest).content == body
    assert _tags(registry, repo) == ["two"]
    assert_error(requests.delete(_url(registry, repo, "one")), 404, "MANIFEST_UNKNOWN")


def test_delete_by_digest_removes_the_manifest_and_all_its_tags(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    digest = _push(registry, repo, "one", body, OCI_MANIFEST)
    _push(registry, repo, "two", body, OCI_MANIFEST)
    keep = json.dumps(make_image(registry.url, repo)).encode()
    _push(registry, repo, "keep", keep, OCI_MANIFEST)
    r = requests.delete(_url(registry, repo, digest))
    assert r.status_code == 202
    for ref in ("one", "two", digest):
        assert_error(_get(registry, repo, ref), 404, "MANIFEST_UNKNOWN")
        assert requests.head(_url(registry, repo, ref)).status_code == 404
    assert _tags(registry, repo) == ["keep"]
    assert _get(registry, repo, "keep").content == keep
    assert_error(requests.delete(_url(registry, repo, digest)), 404, "MANIFEST_UNKNOWN")
    # The manifest can be pushed again afterwards.
    assert _push(registry, repo, "again", body, OCI_MANIFEST) == digest


def test_delete_of_unknown_manifest_is_404(registry, repo):
    _push(registry, repo, "t", json.dumps(make_image(registry.url, repo)).encode(),
          OCI_MANIFEST)
    assert_error(requests.delete(_url(registry, repo, "nope")), 404, "MANIFEST_UNKNOWN")
    assert_error(requests.delete(_url(registry, repo, sha256(b"nope"))), 404,
                 "MANIFEST_UNKNOWN")


def test_invalid_digest_reference_is_rejected(registry, repo):
    for ref in ("sha256:abc", "sha256:" + "z" * 64):
        assert_error(_get(registry, repo, ref), 400, "DIGEST_INVALID")
        r = put_manifest(registry.url, repo, ref, make_image(registry.url, repo))
        assert r.status_code == 400


def test_empty_blob_descriptor_is_recognised(registry, repo):
    # The OCI empty descriptor must be pushed like any other blob.
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2},
        "layers": [],
    }).encode()
    r = put_manifest(registry.url, repo + "-nothing-pushed", "x", body, OCI_MANIFEST)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    push_blob(registry.url, repo, b"{}")
    assert _push(registry, repo, "x", body, OCI_MANIFEST) == sha256(body)



def test_truncated_manifest_body_is_not_stored(registry, repo):
    import socket

    # Trailing whitespace makes every prefix that ends after "}" valid JSON: a
    # body cut short there must still not be taken for the manifest pushed.
    body = json.dumps(make_image(registry.url, repo)).encode() + b"\n" * 200
    host, port = registry.host.split(":")
    head = (
        f"PUT /v2/{repo}/manifests/cut HTTP/1.1\r\n"
        f"Host: {registry.host}\r\n"
        f"Content-Type: {OCI_MANIFEST}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body[:-100])
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
    assert_error(_get(registry, repo, "cut"), 404, "MANIFEST_UNKNOWN")
    assert_error(_get(registry, repo, sha256(body[:-100])), 404, "MANIFEST_UNKNOWN")


def test_push_without_content_type_uses_the_media_type_field(registry, repo):
    body = json.dumps(make_image(registry.url, repo)).encode()
    r = requests.put(_url(registry, repo, "noct"), data=body)
    assert r.status_code == 201, r.text
    got = requests.get(_url(registry, repo, "noct"))
    assert got.content == body
    assert got.headers["Content-Type"] == OCI_MANIFEST


def test_delete_by_digest_in_one_repository_keeps_it_in_another(registry, repo):
    other = repo + "-twin"
    doc = make_image(registry.url, repo)
    for desc in [doc["config"], *doc["layers"]]:
        r = requests.post(f"{registry.url}/v2/{other}/blobs/uploads/",
                          params={"mount": desc["digest"], "from": repo})
        assert r.status_code == 201
    body = json.dumps(doc).encode()
    digest = _push(registry, repo, "t", body, OCI_MANIFEST)
    assert _push(registry, other, "t", body, OCI_MANIFEST) == digest
    assert requests.delete(_url(registry, repo, digest)).status_code == 202
    assert_error(_get(registry, repo, "t"), 404, "MANIFEST_UNKNOWN")
    assert _get(registry, other, "t").content == body
    assert _get(registry, other, digest).content == body


def test_blob_deleted_from_the_repository_is_manifest_blob_unknown(registry, repo):
    doc = make_image(registry.url, repo)
    gone = doc["layers"][0]["digest"]
    assert requests.delete(f"{registry.url}/v2/{repo}/blobs/{gone}").status_code == 202
    assert_error(put_manifest(registry.url, repo, "t", doc), 400, "MANIFEST_BLOB_UNKNOWN")
