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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from typing import Any

_CTX_SIZES = {"sha256": 112, "sha512": 216}
_DIGEST_SIZES = {"sha256": 32, "sha512": 64}
_MAGIC = b"oshs1"  # format tag: openssl SHA ctx, version 1


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
        return _MAGIC + self.algorithm.encode() + b":" + self._ctx.raw

    @classmethod
    def from_state(cls, algorithm: str, state: bytes | None) -> ResumableHash | None:
        """The hash saved by ``state()``, or None when it can't be resumed here."""
        if not state or _LIB is None or algorithm not in _CTX_SIZES:
            return None
        head = _MAGIC + algorithm.encode() + b":"
        raw = bytes(state)
        if not raw.startswith(head) or len(raw) - len(head) != _CTX_SIZES[algorithm]:
            return None
        return cls(algorithm, raw[len(head):])


def _self_test() -> bool:
    """Save mid-way, resume, and compare with hashlib: proves the layout."""
    data = bytes(range(256)) * 5
    try:
        for alg in _CTX_SIZES:
            first = ResumableHash(alg)
            first.update(data[:333])
            resumed = ResumableHash.from_state(alg, first.state())
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
