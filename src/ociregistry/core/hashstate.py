"""SHA-256/512 whose running state can be saved and resumed in another process.

An upload's chunks may arrive at different instances. hashlib's objects can't
be serialised, so finishing would mean re-reading every byte already stored
(from S3: downloading the blob). OpenSSL's low-level SHA API keeps its whole
state in a small public struct (SHA256_CTX: 112 bytes, SHA512_CTX: 216), which
we save as bytes with the session and load on whichever instance goes on. It
is the same assembly hashlib runs, and ctypes releases the GIL during a call.

Instances of one deployment share a build, so the struct layout matches; a
state from another layout is refused (by its size and a self-test at import)
and the caller falls back to re-hashing.

The saved bytes come back from the database, so they are checked before any of
them reach OpenSSL's memory: a checksum over the struct (a flipped bit, a row
written by another version), then the fields OpenSSL trusts blindly. ``num``
indexes the block buffer (SHA256_Update copies to ``data + num``: a large value
is a write out of bounds) and ``md_len`` sets how much Final writes; the bit
count must be the upload's length. Anything odd: not resumable, re-hash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import struct
from typing import Any

_CTX_SIZES = {"sha256": 112, "sha512": 216}
_DIGEST_SIZES = {"sha256": 32, "sha512": 64}
_MAGIC = b"oshs2"  # format tag: openssl SHA ctx + checksum, version 2
_CHECKSUM_SIZE = 8
# The structs' fields (openssl/sha.h): h[8], Nl, Nh, the block buffer, num, md_len.
_LAYOUTS = {"sha256": struct.Struct("@8I2I16I2I"), "sha512": struct.Struct("@8Q2Q16Q2I")}
_BLOCK_SIZES = {"sha256": 64, "sha512": 128}
_WORD_BITS = {"sha256": 32, "sha512": 64}


def _load() -> Any:
    # The libcrypto hashlib itself links to, so the two agree.
    import _hashlib

    for name in (getattr(_hashlib, "__file__", None), ctypes.util.find_library("crypto")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            functions = {}
            for alg in _CTX_SIZES:
                up = alg.upper()
                init, update, final = (
                    getattr(lib, f"{up}_Init"), getattr(lib, f"{up}_Update"),
                    getattr(lib, f"{up}_Final"),
                )
                init.argtypes = [ctypes.c_void_p]
                update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
                final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
                for f in (init, update, final):
                    f.restype = ctypes.c_int
                functions[alg] = (init, update, final)
            return functions
        except (OSError, AttributeError):
            continue
    return None


_LIB = _load()


class ResumableHash:
    """A hashlib-like object (update, copy, hexdigest) with ``state()``."""

    def __init__(self, algorithm: str, state: bytes | None = None) -> None:
        self.algorithm = algorithm
        self._init, self._update, self._final = _LIB[algorithm]
        self._ctx = ctypes.create_string_buffer(_CTX_SIZES[algorithm])
        if state is None:
            self._init(self._ctx)
        else:
            ctypes.memmove(self._ctx, state, len(state))

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, bytes):
            self._update(self._ctx, data, len(data))
            return
        view = memoryview(data)
        if view.readonly:
            data = bytes(view)
            self._update(self._ctx, data, len(data))
        elif view.nbytes:
            buf = (ctypes.c_char * view.nbytes).from_buffer(view)
            self._update(self._ctx, buf, view.nbytes)

    def copy(self) -> ResumableHash:
        return ResumableHash(self.algorithm, self._ctx.raw)

    def digest(self) -> bytes:
        ctx = ctypes.create_string_buffer(self._ctx.raw, len(self._ctx))
        out = ctypes.create_string_buffer(_DIGEST_SIZES[self.algorithm])
        self._final(out, ctx)  # finalises a copy: this object goes on
        return out.raw

    def hexdigest(self) -> str:
        return self.digest().hex()

    def state(self) -> bytes:
        ctx = self._ctx.raw
        return _MAGIC + self.algorithm.encode() + b":" + ctx + _checksum(ctx)

    @classmethod
    def from_state(cls, algorithm: str, state: bytes | None,
                   length: int) -> ResumableHash | None:
        """The hash saved by ``state()`` after ``length`` bytes, or None when it can't
        be resumed here (another layout, a corrupt or foreign state)."""
        if not state or _LIB is None or algorithm not in _CTX_SIZES:
            return None
        head = _MAGIC + algorithm.encode() + b":"
        raw = bytes(state)
        if not raw.startswith(head) or (
            len(raw) - len(head) != _CTX_SIZES[algorithm] + _CHECKSUM_SIZE
        ):
            return None
        ctx, checksum = raw[len(head):-_CHECKSUM_SIZE], raw[-_CHECKSUM_SIZE:]
        if checksum != _checksum(ctx) or not _fields_fit(algorithm, ctx, length):
            return None
        return cls(algorithm, ctx)


def _checksum(ctx: bytes) -> bytes:
    return hashlib.blake2b(ctx, digest_size=_CHECKSUM_SIZE).digest()


def _fields_fit(algorithm: str, ctx: bytes, length: int) -> bool:
    """The fields OpenSSL acts on agree with a hash of ``length`` bytes."""
    fields = _LAYOUTS[algorithm].unpack(ctx)
    low, high, num, md_len = fields[8], fields[9], fields[-2], fields[-1]
    bits = length * 8
    word = _WORD_BITS[algorithm]
    return (
        length >= 0
        and low == bits & ((1 << word) - 1)
        and high == bits >> word
        and num == length % _BLOCK_SIZES[algorithm]
        and md_len == _DIGEST_SIZES[algorithm]
    )


def _self_test() -> bool:
    """Save mid-way, resume, and compare with hashlib: proves the layout."""
    data = bytes(range(256)) * 5
    try:
        for alg in _CTX_SIZES:
            first = ResumableHash(alg)
            first.update(data[:333])
            resumed = ResumableHash.from_state(alg, first.state(), 333)
            if resumed is None:
                return False
            resumed.update(memoryview(bytearray(data[333:])))
            if resumed.hexdigest() != hashlib.new(alg, data).hexdigest():
                return False
    except Exception:  # noqa: BLE001 - any failure means: not usable here
        return False
    return True


AVAILABLE = _LIB is not None and _self_test()


def new_resumable(algorithm: str) -> Any:
    """A resumable hash when this platform has one, else a plain hashlib object."""
    if AVAILABLE and algorithm in _CTX_SIZES:
        return ResumableHash(algorithm)
    return hashlib.new(algorithm)
