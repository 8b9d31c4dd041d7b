"""Manifest parsing, validation and digests for every supported media type."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from ociregistry.core import media_types as mt
from ociregistry.core.errors import ManifestInvalid
from ociregistry.core.manifests import canonical_payload, manifest_digest, parse_manifest


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG = digest(b"config")
LAYER1 = digest(b"layer1")
LAYER2 = digest(b"layer2")
CHILD1 = digest(b"child1")
CHILD2 = digest(b"child2")
SUBJECT = digest(b"subject")


def desc(media_type: str, dig: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": dig, "size": size, **extra}


def image(media_type: str = mt.OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    docker = media_type == mt.DOCKER_MANIFEST
    config_type = (
        "application/vnd.docker.container.image.v1+json"
        if docker
        else "application/vnd.oci.image.config.v1+json"
    )
    layer_type = (
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
        if docker
        else "application/vnd.oci.image.layer.v1.tar+gzip"
    )
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": desc(config_type, CONFIG),
        "layers": [desc(layer_type, LAYER1), desc(layer_type, LAYER2)],
        **extra,
    }


def index(media_type: str = mt.OCI_INDEX, **extra: Any) -> dict[str, Any]:
    child_type = mt.DOCKER_MANIFEST if media_type == mt.DOCKER_MANIFEST_LIST else mt.OCI_MANIFEST
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            desc(child_type, CHILD1, platform={"os": "linux", "architecture": "amd64"}),
            desc(child_type, CHILD2, platform={"os": "linux", "architecture": "arm64"}),
        ],
        **extra,
    }


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# -- image manifests --------------------------------------------------------------
@pytest.mark.parametrize("media_type", [mt.OCI_MANIFEST, mt.DOCKER_MANIFEST])
def test_image_manifest_lists_config_and_layers(media_type):
    parsed = parse_manifest(raw(image(media_type)), media_type)
    assert parsed.media_type == media_type
    assert parsed.blobs == [CONFIG, LAYER1, LAYER2]
    assert parsed.children == []
    assert parsed.subject is None


def test_oci_manifest_without_mediatype_field_is_accepted_by_content_type():
    doc = image()
    del doc["mediaType"]
    assert parse_manifest(raw(doc), mt.OCI_MANIFEST).media_type == mt.OCI_MANIFEST


def test_content_type_parameters_and_case_are_ignored():
    parsed = parse_manifest(raw(image()), mt.OCI_MANIFEST.upper() + "; charset=utf-8")
    assert parsed.media_type == mt.OCI_MANIFEST


def test_media_type_inferred_from_body_when_content_type_is_generic():
    assert parse_manifest(raw(image()), "application/json").media_type == mt.OCI_MANIFEST
    assert parse_manifest(raw(index()), None).media_type == mt.OCI_INDEX
    doc = image()
    del doc["mediaType"]
    assert parse_manifest(raw(doc), None).media_type == mt.OCI_MANIFEST
    doc = index()
    del doc["mediaType"]
    assert parse_manifest(raw(doc), None).media_type == mt.OCI_INDEX


def test_artifact_manifest_reports_artifact_type_and_subject():
    doc = image(
        artifactType="application/vnd.example.sbom",
        subject=desc(mt.OCI_MANIFEST, SUBJECT),
        annotations={"org.example": "yes"},
    )
    parsed = parse_manifest(raw(doc), mt.OCI_MANIFEST)
    assert parsed.artifact_type == "application/vnd.example.sbom"
    assert parsed.subject == SUBJECT
    assert parsed.annotations == {"org.example": "yes"}
    assert SUBJECT not in parsed.blobs  # a subject may be missing from the registry


def test_artifact_type_falls_back_to_config_media_type():
    doc = image()
    doc["config"]["mediaType"] = "application/vnd.example.config+json"
    parsed = parse_manifest(raw(doc), mt.OCI_MANIFEST)
    assert parsed.artifact_type == "application/vnd.example.config+json"


def test_empty_layers_are_fine():
    doc = image()
    doc["layers"] = []
    assert parse_manifest(raw(doc), mt.OCI_MANIFEST).blobs == [CONFIG]


@pytest.mark.parametrize(
    "layer_type",
    [
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ],
)
def test_foreign_layers_with_urls_need_not_be_in_the_registry(layer_type):
    doc = image()
    foreign = digest(b"foreign")
    doc["layers"].append(desc(layer_type, foreign, urls=["https://example.com/layer"]))
    assert foreign not in parse_manifest(raw(doc), mt.OCI_MANIFEST).blobs
    # ... but without urls the registry must have them
    doc["layers"][-1].pop("urls")
    assert foreign in parse_manifest(raw(doc), mt.OCI_MANIFEST).blobs


def test_ordinary_layer_with_urls_is_still_required():
    doc = image()
    doc["layers"][0]["urls"] = ["https://example.com/x"]
    assert LAYER1 in parse_manifest(raw(doc), mt.OCI_MANIFEST).blobs


# -- indexes ----------------------------------------------------------------------
@pytest.mark.parametrize("media_type", [mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST])
def test_index_lists_children_and_platforms(media_type):
    parsed = parse_manifest(raw(index(media_type)), media_type)
    assert parsed.media_type == media_type
    assert parsed.children == [CHILD1, CHILD2]
    assert parsed.blobs == []
    assert [p["architecture"] for p in parsed.platforms] == ["amd64", "arm64"]


def test_index_with_artifact_type_and_subject():
    doc = index(artifactType="application/vnd.example", subject=desc(mt.OCI_MANIFEST, SUBJECT))
    parsed = parse_manifest(raw(doc), mt.OCI_INDEX)
    assert parsed.artifact_type == "application/vnd.example"
    assert parsed.subject == SUBJECT


def test_empty_index_is_valid():
    doc = index()
    doc["manifests"] = []
    assert parse_manifest(raw(doc), mt.OCI_INDEX).children == []


# -- schema 1 ---------------------------------------------------------------------
def schema1_doc() -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "name": "library/hello",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": LAYER1}, {"blobSum": LAYER2}, {"blobSum": LAYER1}],
        "history": [{"v1Compatibility": "{}"}] * 3,
    }


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign_schema1(doc: dict[str, Any]) -> tuple[bytes, bytes]:
    """(signed manifest, the payload it signs), laid out as libtrust does."""
    payload = json.dumps(doc, indent=3).encode()
    # formatLength: up to the last non-space byte before the closing brace.
    closing = len(payload.rstrip()) - 1
    length = len(payload[:closing].rstrip())
    tail = payload[length:]
    protected = b64url(
        json.dumps(
            {"formatLength": length, "formatTail": b64url(tail), "time": "2024-01-01T00:00:00Z"}
        ).encode()
    )
    signature = {
        "header": {"jwk": {"crv": "P-256", "kty": "EC", "x": "x", "y": "y"}, "alg": "ES256"},
        "signature": b64url(b"not-checked-by-the-registry"),
        "protected": protected,
    }
    signatures = json.dumps([signature], indent=3).replace("\n", "\n   ").encode()
    signed = payload[:length] + b',\n   "signatures": ' + signatures + tail
    return signed, payload


def test_schema1_unsigned_lists_unique_layers():
    parsed = parse_manifest(raw(schema1_doc()), mt.DOCKER_SCHEMA1)
    assert parsed.media_type == mt.DOCKER_SCHEMA1
    assert parsed.blobs == [LAYER1, LAYER2]


def test_schema1_signed_digest_is_over_the_payload_without_signatures():
    signed, payload = sign_schema1(schema1_doc())
    assert json.loads(signed)["signatures"]  # really a signed manifest
    parsed = parse_manifest(signed, mt.DOCKER_SCHEMA1_SIGNED)
    assert parsed.media_type == mt.DOCKER_SCHEMA1_SIGNED
    assert parsed.blobs == [LAYER1, LAYER2]
    assert canonical_payload(signed, mt.DOCKER_SCHEMA1_SIGNED) == payload
    assert manifest_digest(signed, mt.DOCKER_SCHEMA1_SIGNED) == digest(payload)
    assert manifest_digest(signed, mt.DOCKER_SCHEMA1_SIGNED) != digest(signed)


def test_schema1_with_signatures_is_treated_as_signed_whatever_the_content_type():
    signed, payload = sign_schema1(schema1_doc())
    for content_type in (mt.DOCKER_SCHEMA1, "application/json", None):
        parsed = parse_manifest(signed, content_type)
        assert parsed.media_type == mt.DOCKER_SCHEMA1_SIGNED
        assert manifest_digest(signed, parsed.media_type) == digest(payload)


def test_schema1_signature_with_bad_protected_header_is_manifest_invalid():
    signed, _ = sign_schema1(schema1_doc())
    doc = json.loads(signed)
    for protected in (
        "!!!",
        b64url(b"not json"),
        b64url(b'{"formatTail": "fQ"}'),
        b64url(b'{"formatLength": 0, "formatTail": "fQ"}'),
        b64url(b'{"formatLength": 99999999, "formatTail": "fQ"}'),
        b64url(b'{"formatLength": "x", "formatTail": "fQ"}'),
        b64url(b'{"formatLength": 1e400, "formatTail": "fQ"}'),
        b64url(b"[1, 2]"),
    ):
        doc["signatures"][0]["protected"] = protected
        with pytest.raises(ManifestInvalid):
            manifest_digest(raw(doc), mt.DOCKER_SCHEMA1_SIGNED)


def test_digest_of_other_types_is_over_the_exact_bytes():
    body = b'{\n  "schemaVersion": 2, "mediaType": "x"  }\n'
    assert manifest_digest(body, mt.OCI_MANIFEST) == digest(body)
    assert manifest_digest(body, mt.OCI_MANIFEST, "sha512") == (
        "sha512:" + hashlib.sha512(body).hexdigest()
    )


# -- validation errors ------------------------------------------------------------
def _mutate(doc: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    "path, value",
    [
        (["schemaVersion"], 1),
        (["schemaVersion"], "2"),
        (["schemaVersion"], _DELETE),
        (["config"], _DELETE),
        (["config"], "sha256:abc"),
        (["config", "digest"], "sha256:nothex"),
        (["config", "digest"], _DELETE),
        (["config", "mediaType"], _DELETE),
        (["config", "mediaType"], ""),
        (["config", "size"], -1),
        (["config", "size"], "10"),
        (["config", "size"], True),
        (["config", "size"], 1.5),
        (["layers"], _DELETE),
        (["layers"], {}),
        (["layers", 0], None),
        (["layers", 0, "digest"], "md5:" + "a" * 32),
        (["layers", 0, "urls"], "https://x"),
        (["layers", 0, "urls"], [1]),
        (["layers", 0, "annotations"], {"a": 1}),
        (["annotations"], {"a": ["b"]}),
        (["annotations"], "x"),
        (["artifactType"], 7),
        (["subject"], {"mediaType": mt.OCI_MANIFEST}),
        (["mediaType"], 5),
        (["mediaType"], mt.OCI_INDEX),  # does not match the Content-Type
    ],
)
def test_invalid_image_manifests(path, value):
    doc = _mutate(image(), path, value)
    with pytest.raises(ManifestInvalid) as info:
        parse_manifest(raw(doc), mt.OCI_MANIFEST)
    assert info.value.code == "MANIFEST_INVALID"
    assert info.value.status == 400


@pytest.mark.parametrize(
    "path, value",
    [
        (["manifests"], _DELETE),
        (["manifests"], "x"),
        (["manifests", 0], []),
        (["manifests", 0, "digest"], "latest"),
        (["manifests", 1, "size"], None),
    ],
)
def test_invalid_indexes(path, value):
    doc = _mutate(index(), path, value)
    with pytest.raises(ManifestInvalid):
        parse_manifest(raw(doc), mt.OCI_INDEX)


@pytest.mark.parametrize(
    "path, value",
    [
        (["schemaVersion"], 2),
        (["name"], _DELETE),
        (["tag"], 1),
        (["fsLayers"], []),
        (["fsLayers"], _DELETE),
        (["fsLayers", 0], "sha256:x"),
        (["fsLayers", 0, "blobSum"], "sha256:short"),
        (["history"], _DELETE),
        (["history"], [{"v1Compatibility": "{}"}]),
    ],
)
def test_invalid_schema1(path, value):
    doc = _mutate(schema1_doc(), path, value)
    with pytest.raises(ManifestInvalid):
        parse_manifest(raw(doc), mt.DOCKER_SCHEMA1)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'"a string"',
        b"42",
        b"null",
        b'{"schemaVersion": 2',
        b"[" * 100_000 + b"]" * 100_000,  # deeply nested: must not blow the stack
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ],
    ids=["empty", "text", "binary", "list", "string", "number", "null", "truncated",
         "nested-lists", "nested-objects"],
)
def test_malformed_payloads(payload):
    with pytest.raises(ManifestInvalid):
        parse_manifest(payload, mt.OCI_MANIFEST)


def test_unknown_shape_without_a_known_type_is_invalid():
    with pytest.raises(ManifestInvalid):
        parse_manifest(b'{"schemaVersion": 2, "foo": 1}', "application/octet-stream")
