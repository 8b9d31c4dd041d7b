"""Property-based tests: untrusted input never raises anything but a RegistryError."""

from __future__ import annotations

import json
import os
import posixpath
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ociregistry.core import media_types as mt
from ociregistry.core.digests import parse_digest
from ociregistry.core.errors import NameInvalid, RangeInvalid, RegistryError
from ociregistry.core.manifests import ParsedManifest, manifest_digest, parse_manifest
from ociregistry.core.names import MAX_NAME_LENGTH, validate_name, validate_tag
from ociregistry.core.uploads import parse_content_range

SETTINGS = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,  # no wall-clock limits: CI machines are slow and shared
    suppress_health_check=[HealthCheck.too_slow],
)

DIGEST = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h),
    st.text(max_size=80),
    st.sampled_from(["sha256:", "sha512:abc", "md5:" + "a" * 32]),
)
MEDIA_TYPE = st.one_of(st.sampled_from(sorted(mt.ALL_MANIFESTS)), st.text(max_size=40))
JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
ANY_JSON = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(value, ANY_JSON)


DESCRIPTOR = st.fixed_dictionaries(
    {"mediaType": _maybe(MEDIA_TYPE), "digest": _maybe(DIGEST), "size": _maybe(st.integers())},
    optional={
        "urls": _maybe(st.lists(st.text(max_size=10), max_size=2)),
        "annotations": _maybe(st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
        "platform": ANY_JSON,
    },
)
V2_MANIFEST = st.fixed_dictionaries(
    {"schemaVersion": _maybe(st.just(2))},
    optional={
        "mediaType": _maybe(MEDIA_TYPE),
        "config": _maybe(DESCRIPTOR),
        "layers": _maybe(st.lists(DESCRIPTOR, max_size=3)),
        "manifests": _maybe(st.lists(DESCRIPTOR, max_size=3)),
        "subject": _maybe(DESCRIPTOR),
        "artifactType": _maybe(st.text(max_size=20)),
        "annotations": _maybe(st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
    },
)
SIGNATURES = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "protected": _maybe(st.text(alphabet="ABCDEFabcdef0123456789-_=", max_size=40)),
            "header": ANY_JSON,
            "signature": ANY_JSON,
        },
    ),
    max_size=2,
)
V1_MANIFEST = st.fixed_dictionaries(
    {"schemaVersion": _maybe(st.just(1))},
    optional={
        "name": _maybe(st.text(max_size=10)),
        "tag": _maybe(st.text(max_size=10)),
        "fsLayers": _maybe(
            st.lists(st.fixed_dictionaries({"blobSum": _maybe(DIGEST)}), max_size=3)
        ),
        "history": _maybe(st.lists(ANY_JSON, max_size=3)),
        "signatures": _maybe(SIGNATURES),
    },
)
MANIFEST_BYTES = st.one_of(
    st.binary(max_size=200),
    ANY_JSON.map(lambda d: json.dumps(d).encode()),
    V2_MANIFEST.map(lambda d: json.dumps(d).encode()),
    V1_MANIFEST.map(lambda d: json.dumps(d).encode()),
)
CONTENT_TYPE = st.one_of(st.none(), MEDIA_TYPE, MEDIA_TYPE.map(lambda t: t + "; charset=utf-8"))


@SETTINGS
@given(payload=MANIFEST_BYTES, content_type=CONTENT_TYPE)
@example(payload=b"[" * 50_000, content_type=mt.OCI_MANIFEST)
@example(payload=b'{"schemaVersion": 1e999}', content_type=None)
def test_manifest_parsing_only_raises_registry_errors(payload, content_type):
    try:
        parsed = parse_manifest(payload, content_type)
        digest = manifest_digest(payload, parsed.media_type)
    except RegistryError as exc:
        assert exc.code == "MANIFEST_INVALID"
        return
    # What is accepted is well-formed: known type, valid digests everywhere.
    assert isinstance(parsed, ParsedManifest)
    assert parsed.media_type in mt.ALL_MANIFESTS
    for ref in [*parsed.blobs, *parsed.children, *([parsed.subject] if parsed.subject else [])]:
        parse_digest(ref)
    parse_digest(digest)
    # Every blob or child the registry must hold has one declared size to check.
    assert set(parsed.sizes) == set(parsed.blobs) | set(parsed.children)
    assert all(isinstance(n, int) and n >= 0 for n in parsed.sizes.values())


SAME_BLOB = "sha256:" + "ab" * 32


@SETTINGS
@given(sizes=st.lists(st.integers(min_value=0, max_value=2**64), min_size=1, max_size=4))
def test_one_digest_with_two_sizes_is_refused_at_parse_time(sizes):
    descriptors = [{"mediaType": "application/octet-stream", "digest": SAME_BLOB, "size": n}
                   for n in sizes]
    payload = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                          "config": descriptors[0], "layers": descriptors[1:]}).encode()
    try:
        parsed = parse_manifest(payload, mt.OCI_MANIFEST)
    except RegistryError as exc:
        assert len(set(sizes)) > 1
        assert exc.code == "MANIFEST_INVALID" and exc.detail["digest"] == SAME_BLOB
        return
    assert len(set(sizes)) == 1 and parsed.sizes == {SAME_BLOB: sizes[0]}


NAME_CHARS = st.sampled_from(list("abcz09._-/") + ["..", "__", "//", "\n", "\\", "%2f", "A", " "])


@SETTINGS
@given(name=st.one_of(st.text(max_size=300), st.lists(NAME_CHARS, max_size=80).map("".join)))
@example(name="a" * (MAX_NAME_LENGTH + 1))
@example(name="a/../b")
@example(name="a\n")
def test_name_validation_never_lets_a_path_trick_through(name):
    try:
        assert validate_name(name) == name
    except NameInvalid:
        return
    assert 0 < len(name) <= MAX_NAME_LENGTH
    parts = name.split("/")
    assert all(parts) and ".." not in parts and "." not in parts
    assert posixpath.normpath(name) == name  # joining it under a root stays under it
    assert name.isascii() and name == name.lower()
    assert not any(c in name for c in "\\\n\r\t\x00 :%@")


@SETTINGS
@given(tag=st.text(max_size=200))
def test_tag_validation_only_raises_registry_errors(tag):
    try:
        validate_tag(tag)
    except RegistryError as exc:
        assert exc.code == "TAG_INVALID"
        return
    assert "/" not in tag and "\n" not in tag and 0 < len(tag) <= 128


@SETTINGS
@given(value=st.one_of(st.text(max_size=200), DIGEST))
def test_digest_parsing_only_raises_registry_errors(value):
    try:
        algorithm, encoded = parse_digest(value)
    except RegistryError as exc:
        assert exc.code == "DIGEST_INVALID"
        return
    assert value == f"{algorithm}:{encoded}"
    assert "/" not in value and "\n" not in value


RANGE_CHARS = st.sampled_from(list("0123456789- /*") + ["bytes ", "²", "\u0661", "+", "x"])


@SETTINGS
@given(
    header=st.one_of(
        st.none(), st.text(max_size=60), st.lists(RANGE_CHARS, max_size=30).map("".join)
    )
)
@example(header="0-\xb2")
@example(header="9" * 5000 + "-" + "9" * 5000)
def test_content_range_parsing_only_raises_range_invalid(header):
    try:
        parsed = parse_content_range(header)
    except RangeInvalid as exc:
        assert exc.status == 416
        return
    if parsed is not None:
        start, end = parsed
        assert 0 <= start <= end


@SETTINGS
@given(start=st.integers(0, 2**62), length=st.integers(1, 2**40))
def test_content_range_round_trip(start, length):
    end = start + length - 1
    assert parse_content_range(f"{start}-{end}") == (start, end)
    assert parse_content_range(f"bytes {start}-{end}/*") == (start, end)
