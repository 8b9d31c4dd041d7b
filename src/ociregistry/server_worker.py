"""gunicorn's gthread worker, plus a quick "no" to TLS spoken to the plain-HTTP port.

Clients told to skip TLS verification (skopeo, podman --tls-verify=false) try
HTTPS first and fall back to HTTP when that fails. gunicorn would read the TLS
ClientHello as the start of a request line and wait for a line end that never
comes, so every client command stalled for its 10 s handshake timeout. Go's
net/http (Distribution) answers at once; so do we: a plain-HTTP connection
whose first byte starts a TLS record gets a 400 and is closed.

And pipelining: gthread hands a kept-alive connection back to its poller, which
wakes on a readable socket. When a client sent its next request together with the
previous one, those bytes already sit in the parser's buffer, the socket never
becomes readable again and the request went unanswered until the keep-alive
timeout closed the connection. A connection whose buffer holds the start of the
next request is served again at once, in the same thread.
"""

from __future__ import annotations

import socket
from typing import Any

from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers.gthread import ThreadWorker

_TLS_HANDSHAKE = b"\x16"
_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: 40\r\n\r\nThis port speaks plain HTTP, not HTTPS.\n"
)


class RegistryThreadWorker(ThreadWorker):
    def handle(self, conn: Any) -> tuple[bool, Any]:
        keepalive, conn = self._handle_one(conn)
        while keepalive and self.alive and _next_request_buffered(conn):
            keepalive, conn = self._handle_one(conn)
        return keepalive, conn

    def _handle_one(self, conn: Any) -> tuple[bool, Any]:
        if not self.cfg.is_ssl and not getattr(conn, "tls_probe_done", False):
            conn.tls_probe_done = True
            try:
                first = conn.sock.recv(1, socket.MSG_PEEK)
            except OSError:
                return (False, conn)
            if first == _TLS_HANDSHAKE:
                try:
                    conn.sock.sendall(_REFUSAL)
                except OSError:
                    pass
                return (False, conn)
        return super().handle(conn)


def _next_request_buffered(conn: Any) -> bool:
    """True when bytes past the last request's body are already in the parser's
    buffer (a pipelined request): the poller would never be woken for them.

    When the last body was not read to its end, only its known rest is skipped
    over (the parser does that before the next request); a body whose end is
    still on the wire leaves the connection to the poller as before.
    """
    parser = conn.parser
    message = getattr(parser, "mesg", None)
    if message is None:
        return False
    reader = message.body.reader
    if isinstance(reader, LengthReader):
        rest = reader.length
    elif isinstance(reader, ChunkedReader) and reader.parser is None:
        rest = 0
    else:
        return False
    buffered = parser.unreader.buf.getbuffer().nbytes
    if buffered != rest:
        return buffered > rest
    # TLS: decrypted bytes waiting in the SSL object don't wake the poller either.
    pending = getattr(conn.sock, "pending", None)
    return pending is not None and pending() > 0
