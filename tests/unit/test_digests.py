"""Digest parsing and hashing: what the registry accepts as a digest."""

from __future__ import annotations

import hashlib

import pytest

from ociregistry.core.digests import (
    ALGORITHMS,
    digest_bytes,
    is_digest,
    new_hasher,
    parse_digest,
)
from ociregistry.core.errors import DigestInvalid, RegistryError, Unsupported

SHA256 = "sha256:" + hashlib.sha256(b"hello").hexdigest()
SHA512 = "sha512:" + hashlib.sha512(b"hello").hexdigest()


def test_parse_sha256_and_sha512():
    assert parse_digest(SHA256) == ("sha256", SHA256.split(":", 1)[1])
    assert parse_digest(SHA512) == ("sha512", SHA512.split(":", 1)[1])


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        ":" + "a" * 64,
        "sha256:" + "a" * 63,  # too short
        "sha256:" + "a" * 65,  # too long
        "sha256:" + "A" * 64,  # the spec wants lower-case hex for sha256
        "sha256:" + "g" * 64,  # not hex
        "sha512:" + "a" * 64,  # sha512 needs 128 hex digits
        "SHA256:" + "a" * 64,  # algorithm is lower case
        "sha256:" + "a" * 64 + "\n",  # trailing newline must not slip through
        "sha256:" + "a" * 64 + "/../x",
        " sha256:" + "a" * 64,
        "sha256::" + "a" * 64,
        "md5:" + "a" * 32,  # well-formed but not an algorithm the registry computes
        "sha384:" + "a" * 96,
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
    ],
)
def test_invalid_digests_raise_digest_invalid(value):
    with pytest.raises(DigestInvalid) as info:
        parse_digest(value)
    assert info.value.code == "DIGEST_INVALID"
    assert info.value.status == 400


def test_none_is_invalid_not_a_crash():
    with pytest.raises(DigestInvalid):
        parse_digest(None)  # type: ignore[arg-type]


def test_is_digest_is_about_shape_only():
    assert is_digest(SHA256)
    assert is_digest("md5:abc")  # shape of a digest: a tag can never contain ':'
    assert not is_digest("latest")
    assert not is_digest("v1.0")


def test_digest_bytes_matches_hashlib():
    assert digest_bytes(b"hello") == SHA256
    assert digest_bytes(b"hello", "sha512") == SHA512
    assert digest_bytes(b"") == "sha256:" + hashlib.sha256(b"").hexdigest()


def test_new_hasher_streams_like_hashlib():
    for algorithm in ALGORITHMS:
        h = new_hasher(algorithm)
        h.update(b"hel")
        h.update(b"lo")
        assert f"{algorithm}:{h.hexdigest()}" == digest_bytes(b"hello", algorithm)


def test_new_hasher_refuses_unknown_algorithm():
    with pytest.raises(Unsupported) as info:
        new_hasher("md5")
    assert isinstance(info.value, RegistryError)
    assert info.value.status == 400
