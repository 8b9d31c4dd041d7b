"""gunicorn's gthread worker, plus a quick "no" to TLS spoken to the plain-HTTP port.

Clients told to skip TLS verification (skopeo, podman --tls-verify=false) try
HTTPS first and fall back to HTTP when that fails. gunicorn would read the TLS
ClientHello as the start of a request line and wait for a line end that never
comes, so every client command stalled for its 10 s handshake timeout. Go's
net/http (Distribution) answers at once; so do we: a plain-HTTP connection
whose first byte starts a TLS record gets a 400 and is closed.
"""

from __future__ import annotations

import socket
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

_TLS_HANDSHAKE = b"\x16"
_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: 40\r\n\r\nThis port speaks plain HTTP, not HTTPS.\n"
)


class RegistryThreadWorker(ThreadWorker):
    def handle(self, conn: Any) -> tuple[bool, Any]:
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
