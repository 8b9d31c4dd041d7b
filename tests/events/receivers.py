"""Real webhook receivers for the events tests: small HTTP(S) servers on loopback.

``Receiver`` records every request (headers, body) and answers according to its
``mode``: "ok" (204), "fail" (500), "slow" (waits ``delay`` seconds, then 204).
It can be stopped and started again on the same port (connection refused in
between). ``verify`` checks a Standard Webhooks signature with plain ``hmac``,
written here from the specification, independently of the registry's code.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: float = 300) -> bool:
    """A Standard Webhooks receiver's check, from the spec."""
    msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(stamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    return any(
        hmac.compare_digest(expected, sig.split(",", 1)[1])
        for sig in headers["webhook-signature"].split()
        if sig.startswith("v1,")
    )


def unbatch(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The events one request carried, as its content type says."""
    doc = json.loads(request["body"])
    kind = request["headers"].get("content-type", "")
    if kind == "application/cloudevents-batch+json":
        assert isinstance(doc, list), doc
        return doc
    if kind == "application/json" and set(doc) == {"events"}:
        return doc["events"]
    return [doc]


class Receiver:
    def __init__(
        self, mode: str = "ok", delay: float = 0.0, tls: tuple[Path, Path] | None = None,
        keep_alive: bool = False, answer: bytes = b"",
    ) -> None:
        self.mode, self.delay, self.tls = mode, delay, tls
        self.keep_alive = keep_alive  # HTTP/1.1 persistent connections (else 1.0: one each)
        self.answer = answer  # a 2xx answer's body (200 then; 204 when empty)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        if self.tls:  # the certificate names localhost
            return f"https://localhost:{self.port}/hook"
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if owner.keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner.lock:
                    owner.requests.append(
                        {
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "at": time.time(),
                            "peer": self.client_address,  # one per connection
                        }
                    )
                if owner.mode == "slow":
                    time.sleep(owner.delay)
                answer = owner.answer
                self.send_response(500 if owner.mode == "fail" else 200 if answer else 204)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict[str, Any]]:
        """Every event received, in order of arrival: batches are opened (a plain
        batch's ``events``, a CloudEvents batch's array); a Distribution envelope,
        whose receivers take it whole, stays one item."""
        with self.lock:
            requests = list(self.requests)
        events: list[dict[str, Any]] = []
        for request in requests:
            events.extend(unbatch(request))
        return events

    def wait_for(self, predicate: Any, timeout: float = 90) -> list[dict[str, Any]]:
        """Poll until ``predicate(bodies)`` holds; the bodies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bodies = self.bodies()
            if predicate(bodies):
                return bodies
            time.sleep(0.1)
        raise AssertionError(f"receiver never saw it; got {self.bodies()!r}"[:3000])


def make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for localhost it signs: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "events test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths
