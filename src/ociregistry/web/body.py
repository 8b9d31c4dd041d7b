"""Streaming request bodies without copying them around.

gunicorn's request body object reads 1 KiB at a time and re-buffers the rest,
which made blob pushes spend most of their CPU shuffling bytes. For a body with
a Content-Length under gunicorn we take what gunicorn has already buffered and
then ``recv_into`` one reusable buffer straight from the socket. Anything else
(chunked transfer encoding, other servers) reads the WSGI stream normally; a
chunked body whose framing gunicorn's parser refuses becomes ``MalformedBody``
(a 400) and the connection is closed after the answer, since nothing after a
broken frame can be found again.
"""

from __future__ import annotations

import ctypes
import io
import threading
from collections.abc import Iterator
from typing import Any

from werkzeug.exceptions import BadRequest, ClientDisconnected

BUFFER = 1 << 20
DIRECT_MIN = 64 << 10  # buffers from this size on start on a page boundary
PAGE = 4096


class MalformedBody(BadRequest):
    description = "malformed chunked transfer encoding in the request body"


class BufferLease:
    """Receive buffers of one request, given back for the next when it ends.

    A fresh 1 MiB buffer costs its page faults and zeroing, with the GIL held (a
    quarter of an 8 MiB PATCH's Python time); up to ``KEEP`` whole ones are kept
    per process. The caller releases the lease only once nothing reads the
    chunks any more (core/hashpipe.py's helpers are joined before the upload
    service returns). A body under ``BUFFER`` but at least ``DIRECT_MIN`` (the
    small layers of an image) is received into the start of a pooled buffer too.
    """

    # Whole buffers kept per process: what concurrent pushes hold at once (each up
    # to core/hashpipe.py's ring of 4), so that a push flow's uploads find theirs
    # here rather than fault in and zero a fresh MiB each (3-5 % of the server's
    # CPU in bench/loads.py's push flow with 4). Kept only once used: the peak of
    # the process's memory is what those pushes held anyway.
    KEEP = 16
    _free: list[memoryview] = []
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._taken: list[memoryview] = []

    def get(self, size: int) -> memoryview:
        if size > BUFFER or size < DIRECT_MIN:
            return _buffer(size)
        with self._lock:
            view = self._free.pop() if self._free else None
        if view is None:
            view = _buffer(BUFFER)
        self._taken.append(view)
        return view if size == BUFFER else view[:size]

    def release(self) -> None:
        taken, self._taken = self._taken, []
        with self._lock:
            room = self.KEEP - len(self._free)
            self._free.extend(taken[:max(room, 0)])


def body_chunks(
    environ: dict[str, Any], stream: Any, idle_timeout: float = 300, ring: int = 1,
    lease: BufferLease | None = None,
) -> Iterator[bytes | memoryview]:
    """The request body in chunks; each chunk is valid until ``ring`` more have been
    asked for (the reader cycles through ``ring`` reused buffers, so a consumer
    such as core/hashpipe.py may still hash a chunk while the next arrives).

    A client that stops sending for ``idle_timeout`` seconds fails the request
    (and the chunk is rolled back) instead of holding a thread forever.
    """
    fast = _gunicorn_length_body(environ)
    if fast is None:
        while True:
            try:
                chunk = stream.read(BUFFER)
            except Exception as exc:
                raise framing_error(environ, exc) or exc from exc
            if not chunk:
                return
            yield chunk
    body, reader, sock = fast
    remaining = reader.length
    pending = body.buf.getvalue()
    body.buf = io.BytesIO()
    # Bytes gunicorn already received past what it handed out: take only ours
    # (a pipelined next request may follow them).
    unread = reader.unreader.buf.getvalue()
    pending, rest = pending + unread[:remaining], unread[remaining:]
    reader.unreader.buf = io.BytesIO()
    reader.unreader.buf.write(rest)
    remaining -= min(len(unread), remaining)
    reader.length = remaining
    if pending and (not remaining or len(pending) >= BUFFER):
        yield pending
        pending = b""
    if sock.gettimeout() is None:
        sock.settimeout(idle_timeout)
    # Allocated as needed and no larger than the body: a manifest's few KiB
    # don't cost a zeroed MiB each.
    views: list[memoryview] = []
    turn = 0
    while remaining:
        if turn == len(views):
            size = min(BUFFER, remaining + len(pending))
            views.append(lease.get(size) if lease is not None else _buffer(size))
        view = views[turn]
        turn = (turn + 1) % max(ring, 1)
        # The bytes that came with the headers start the first buffer: every chunk
        # but the last is then a whole BUFFER, and an upload that starts on a block
        # boundary stays on one (storage/direct_write.py writes such chunks as they are).
        n = len(pending)
        view[:n] = pending
        pending = b""
        # Fill the buffer before handing it on: a loopback or LAN recv returns far
        # less than 1 MiB, and every chunk costs a Python round and a hand-off to
        # the hasher (core/hashpipe.py).
        want = min(len(view), remaining + n)
        while n < want:
            got = sock.recv_into(view[n:], want - n)
            if got == 0:
                raise ClientDisconnected()
            n += got
            remaining -= got
            reader.length = remaining
        yield view[:n]


def _buffer(size: int) -> memoryview:
    """A writable buffer; a large one starts on a page boundary, which O_DIRECT
    writes need (a bytearray's memory starts 16 bytes into a page). Cut out of a
    slightly larger bytearray rather than mapped: the allocator reuses freed
    memory, where a fresh mapping faults in and zeroes every page per request."""
    if size < DIRECT_MIN:
        return memoryview(bytearray(size))
    raw = bytearray(size + PAGE)
    skip = -ctypes.addressof(ctypes.c_char.from_buffer(raw)) % PAGE
    return memoryview(raw)[skip:skip + size]


def _gunicorn_length_body(environ: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    sock = environ.get("gunicorn.socket")
    body = environ.get("wsgi.input")
    if sock is None or body is None:
        return None
    try:
        from gunicorn.http.body import Body, LengthReader
    except ImportError:
        return None
    if not isinstance(body, Body) or not isinstance(body.reader, LengthReader):
        return None
    if getattr(sock, "recv_into", None) is None:
        return None
    return body, body.reader, sock


def framing_error(environ: dict[str, Any], exc: Exception) -> Exception | None:
    """What a failure of the server's body parser means for the request, or None
    when ``exc`` is not one. A broken frame also closes the connection after the
    answer: the server can't tell where the next request would start."""
    try:
        from gunicorn.http import errors
    except ImportError:
        return None
    if isinstance(exc, errors.NoMoreData):
        return ClientDisconnected()
    framing = (errors.InvalidChunkSize, errors.ChunkMissingTerminator, errors.ParseException)
    if not isinstance(exc, framing):
        return None
    message = getattr(getattr(environ.get("wsgi.input"), "reader", None), "req", None)
    if message is not None:
        message.force_close()
    return MalformedBody()

