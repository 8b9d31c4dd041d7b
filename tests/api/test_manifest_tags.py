"""Manifests: tags (several at once, moves, validity) and deletion."""

from __future__ import annotations

import json

import pytest
import requests

from tests.api.manifest_support import (
    _get,
    _push,
    _tags,
    _url,
)
from tests.helpers import (
    OCI_EMPTY,
    OCI_MANIFEST,
    assert_error,
    make_image,
    push_blob,
    put_manifest,
    send_and_hang_up,
    sha256,
)


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
    send_and_hang_up(host, int(port), head + body[:-100])
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
