"""Digest parsing and hashing (sha256, sha512)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ociregistry.core.errors import DigestInvalid, Unsupported

# Encoded lengths of the algorithms the registry can compute.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_HEX_RE = re.compile(r"^[a-f0-9]+$")


def parse_digest(value: str) -> tuple[str, str]:
    """Split and validate ``alg:hex``; DIGEST_INVALID when malformed or unsupported."""
    match = _DIGEST_RE.fullmatch(value or "")
    if not match:
        raise DigestInvalid("invalid digest", {"digest": value})
    algorithm, encoded = match.groups()
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise DigestInvalid("unsupported digest algorithm", {"digest": value})
    if len(encoded) != length or not _HEX_RE.fullmatch(encoded):
        raise DigestInvalid("invalid digest encoding", {"digest": value})
    return algorithm, encoded


def is_digest(value: str) -> bool:
    """True when the value has the shape of a digest (any algorithm)."""
    return ":" in value and bool(_DIGEST_RE.fullmatch(value))


def new_hasher(algorithm: str) -> Any:
    if algorithm not in ALGORITHMS:
        raise Unsupported("unsupported digest algorithm", {"algorithm": algorithm}, status=400)
    return hashlib.new(algorithm)


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
