"""A saved hash state comes back from the database: nothing odd in it reaches OpenSSL.

OpenSSL trusts its SHA context: ``num`` indexes the block buffer (a large value
makes the next update write out of bounds) and ``md_len`` says how many bytes
Final writes. Every state whose fields don't fit the upload's length, or whose
checksum doesn't match, must be refused so that the caller re-hashes.
"""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from ociregistry.core import hashstate
from ociregistry.core.hashstate import ResumableHash

LAYOUTS = {"sha256": "@8I2I16I2I", "sha512": "@8Q2Q16Q2I"}
LENGTH = 1000


def saved(algorithm: str, data: bytes = b"x" * LENGTH) -> bytes:
    h = ResumableHash(algorithm)
    h.update(data)
    return h.state()


def split(algorithm: str, state: bytes) -> tuple[bytes, list[int], bytes]:
    head = state[: state.index(b":") + 1]
    size = struct.calcsize(LAYOUTS[algorithm])
    ctx = state[len(head): len(head) + size]
    return head, list(struct.unpack(LAYOUTS[algorithm], ctx)), state[len(head) + size:]


def forge(algorithm: str, state: bytes, **changes: int) -> bytes:
    assert hashstate.AVAILABLE  # Linux with OpenSSL, as everywhere the tests run
    """The state with fields changed and a checksum that matches again (the worst case:
    a row rewritten on purpose, not a random flip)."""
    head, fields, _ = split(algorithm, state)
    names = {"low": 8, "high": 9, "num": -2, "md_len": -1}
    for name, value in changes.items():
        fields[names[name]] = value
    ctx = struct.pack(LAYOUTS[algorithm], *fields)
    return head + ctx + hashstate._checksum(ctx)


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_a_saved_state_resumes_to_the_right_digest(algorithm):
    data = os.urandom(LENGTH + 77)
    h = ResumableHash.from_state(algorithm, saved(algorithm, data[:LENGTH]), LENGTH)
    assert h is not None
    h.update(data[LENGTH:])
    assert h.hexdigest() == hashlib.new(algorithm, data).hexdigest()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("changes", [
    {"num": 1 << 30},  # the next update would write a gigabyte past the buffer
    {"num": 200},
    {"num": LENGTH % 64 + 1},
    {"md_len": 4096},  # Final would write past the digest buffer
    {"md_len": 0},
    {"md_len": 28},  # a SHA-224/384 context: a digest of the wrong length
    {"low": 0},  # a bit count that is not this upload's length
    {"high": 1},
])
def test_fields_that_do_not_fit_the_upload_are_refused(algorithm, changes):
    state = forge(algorithm, saved(algorithm), **changes)
    assert ResumableHash.from_state(algorithm, state, LENGTH) is None


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_a_state_for_another_length_is_refused(algorithm):
    state = saved(algorithm)
    assert ResumableHash.from_state(algorithm, state, LENGTH - 1) is None
    assert ResumableHash.from_state(algorithm, state, LENGTH + 64) is None


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_a_flipped_bit_anywhere_is_refused(algorithm):
    state = saved(algorithm)
    head = state.index(b":") + 1
    for at in range(head, len(state), 7):
        flipped = state[:at] + bytes([state[at] ^ 0x10]) + state[at + 1:]
        assert ResumableHash.from_state(algorithm, flipped, LENGTH) is None, at


@pytest.mark.parametrize("state", [
    b"", b"oshs2", b"oshs2sha256:", b"oshs2sha512:" + b"\0" * 224, b"\xff" * 120,
    b"oshs1sha256:" + b"\0" * 112,  # the unchecked format of earlier versions
])
def test_foreign_or_truncated_states_are_refused(state):
    assert ResumableHash.from_state("sha256", state, LENGTH) is None
    assert ResumableHash.from_state("sha512", state, LENGTH) is None


def test_a_state_of_the_other_algorithm_is_refused():
    assert ResumableHash.from_state("sha512", saved("sha256"), LENGTH) is None
