"""Streaming request bodies without copying them around.

gunicorn's request body object reads 1 KiB at a time and re-buffers the rest,
which made blob pushes spend most of their CPU shuffling bytes. For a body with
a Content-Length under gunicorn we take what gunicorn has already buffered and
then ``recv_into`` one reusable buffer straight from the socket. Anything else
(chunked transfer encoding, other servers) reads the WSGI stream normally.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from werkzeug.exceptions import ClientDisconnected

BUFFER = 1 << 20


def body_chunks(
    environ: dict[str, Any], stream: Any, idle_timeout: float = 300
) -> Iterator[bytes | memoryview]:
    """The request body in chunks; each chunk is valid until the next is asked for.

    A client that stops sending for ``idle_timeout`` seconds fails the request
    (and the chunk is rolled back) instead of holding a thread forever.
    """
    fast = _gunicorn_length_body(environ)
    if fast is None:
        while chunk := stream.read(BUFFER):
            yield chunk
        return
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
    if pending:
        yield pending
    if sock.gettimeout() is None:
        sock.settimeout(idle_timeout)
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    while remaining:
        n = sock.recv_into(view, min(BUFFER, remaining))
        if n == 0:
            raise ClientDisconnected()
        remaining -= n
        reader.length = remaining
        yield view[:n]


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
