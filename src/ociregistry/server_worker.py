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

And graceful stops (SIGTERM, a rolling restart): gthread stops its loop but
leaves its kept-alive connections open, unread, until the last request in flight
has finished (up to the graceful timeout). A proxy reuses such a connection for
its next request, which nobody reads; when the worker exits the proxy sees the
connection closed after sending the request, and a POST or PATCH cannot be
replayed elsewhere: the client got a 502. So, as soon as the loop ends, the
worker closes its listening sockets (new connections are refused and the proxy
tries another instance), serves what already arrived, and closes every idle
connection, so the proxy stops using them at once; every answer sent from then
on says ``Connection: close``, those of requests that began before included.
"""

from __future__ import annotations

import contextlib
import select
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gunicorn.http import wsgi
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers.gthread import ThreadWorker

_TLS_HANDSHAKE = b"\x16"
_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: 40\r\n\r\nThis port speaks plain HTTP, not HTTPS.\n"
)
_COALESCE = 64 * 1024  # a first body chunk up to this size is sent with the headers


class _DrainingPool(ThreadPoolExecutor):
    """gthread's pool; its shutdown after the loop first lets the worker drain."""

    def __init__(self, worker: RegistryThreadWorker, max_workers: int) -> None:
        super().__init__(max_workers=max_workers)
        self._worker = worker

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        if not self._worker.alive:
            self._worker.drain_connections()
        super().shutdown(wait, **kwargs)


class RegistryResponse(wsgi.Response):
    """gunicorn's response, two changes.

    A small body goes out with its header block in one send (gunicorn sends the
    headers, then each body chunk: two syscalls and two TCP segments for a manifest
    or ``{}``). And once the worker stops, every response says ``Connection: close``,
    those of requests that began before included: the proxy would otherwise reuse a
    connection about to be closed.
    """

    worker: Any = None  # the worker of this process (set when it starts)

    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        if not self.worker.alive:
            self.force_close()
        return super().start_response(status, headers, exc_info)

    def write(self, arg: Any) -> None:
        if self.headers_sent or type(arg) is not bytes or len(arg) > _COALESCE:
            super().write(arg)
            return
        # What send_headers and write do, in one sendall.
        tosend = [*self.default_headers(), *[f"{k}: {v}\r\n" for k, v in self.headers]]
        head = ("".join(tosend) + "\r\n").encode("latin-1")
        self.headers_sent = True
        count = len(arg)
        if self.response_length is not None and count > self.response_length - self.sent:
            count = max(0, self.response_length - self.sent)
            arg = arg[:count]
        if self.chunked:
            body = b"%X\r\n%s\r\n" % (count, arg) if count else b""
        else:
            body = arg
        self.sent += count
        self.sock.sendall(head + body)


class RegistryThreadWorker(ThreadWorker):
    _drained = False
    # Seconds a thread waits for a kept-alive connection's next request (server.py sets
    # it from http.keepalive_linger_ms before the workers are forked; 0: never).
    linger = 0.0

    def init_process(self) -> None:
        RegistryResponse.worker = self
        wsgi.Response = RegistryResponse  # what wsgi.create() makes, in this worker process
        super().init_process()

    def get_thread_pool(self) -> ThreadPoolExecutor:
        return _DrainingPool(self, self.cfg.threads)

    def drain_connections(self) -> None:
        """Stopping: refuse new connections, serve requests already here, close idle ones."""
        if self._drained:
            return
        self._drained = True
        with self._lock:
            for listener in self.sockets:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self.poller.unregister(listener)
                listener.close()
            # A request may have reached a kept-alive connection just now.
            ready = {key.fd for key, _ in self.poller.select(0.05)}
            keys = list(self.poller.get_map().values())
        for key in keys:
            if key.fd in ready:
                key.data(key.fileobj)  # as the loop would: it is served, then closed
                continue
            conn = key.data.args[0]  # partial(on_client_socket_readable, conn)
            with self._lock:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self.poller.unregister(key.fileobj)
                with contextlib.suppress(ValueError):
                    self._keep.remove(conn)
            self.nr_conns -= 1
            conn.close()

    def handle(self, conn: Any) -> tuple[bool, Any]:
        keepalive, conn = self._handle_one(conn)
        while keepalive and self.alive and (
                _next_request_buffered(conn) or self._next_request_soon(conn)):
            keepalive, conn = self._handle_one(conn)
        return keepalive, conn

    def _next_request_soon(self, conn: Any) -> bool:
        """True when the connection's next request arrives within ``linger``, while
        this worker has no more connections than threads (none is kept from a thread)
        and the last request's body was read to its end (so what arrives is a request)."""
        if self.linger <= 0 or self.nr_conns > self.cfg.threads or not _body_read(conn):
            return False
        try:
            poll = select.poll()
            poll.register(conn.sock, select.POLLIN)
            ready = poll.poll(self.linger * 1000)
        except (OSError, ValueError):
            return False
        return bool(ready) and self.alive

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


def _body_read(conn: Any) -> bool:
    """True when the last request's body was read to its end and nothing follows it
    in the parser's buffer."""
    message = getattr(conn.parser, "mesg", None)
    if message is None:
        return False
    reader = message.body.reader
    if isinstance(reader, LengthReader):
        if reader.length:
            return False
    elif not (isinstance(reader, ChunkedReader) and reader.parser is None):
        return False
    return conn.parser.unreader.buf.getbuffer().nbytes == 0


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
