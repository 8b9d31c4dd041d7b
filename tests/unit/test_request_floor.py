"""What the request-floor work changed must answer exactly as before.

- ``redact()`` skips its substitutions when a cheap search finds no secret-like
  word: the result must equal the full substitution on every kind of secret.
- The gthread worker's response sends a small body with its header block in one
  write: the bytes on the wire must equal gunicorn's own response's, for a
  Content-Length body, a chunked one, a body longer than its Content-Length and
  an empty one; and after the worker stops, the answer says ``Connection: close``.
"""

from __future__ import annotations

import re
import socket
from types import SimpleNamespace

import pytest
from gunicorn.http import wsgi

from ociregistry.auth import redact
from ociregistry.server_worker import RegistryResponse

ROBOT = "ocr_0123456789ab_" + "A" * 43


def _full_redaction(text: str) -> str:
    for pattern, replacement in redact._PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@pytest.mark.parametrize("text", [
    "127.0.0.1 GET /v2/ 200 0 2 0.0010 \"-\" 5f0c",
    "127.0.0.1 HEAD /v2/library/alpine/manifests/3.19 200 0 0 0.0010 \"alice\" x",
    "AUTHORIZATION: BASIC YWxpY2U6c2VjcmV0",
    "Proxy-Authorization=Bearer abcdefghijk",
    "bearer abcdefghijklmnop",
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
    "PassWord=s3cret&x=1",
    "passwd: s3cret",
    '{"access_token": "s3cret"}',
    "TOKEN=abc",
    "client Secret = s3cret",
    f"robot {ROBOT} used",
    "alice:$2y$04$IqVAe3RQasZsPrfIqRW8Juy9WX6VBHHguZmwILWsiwSAh1S.4bf1a",
    "a path /v2/tokens/secretive/manifests/latest",
    "",
    # Letters (?i) folds onto ASCII ones (Kelvin sign, long s, dotless i): the regex's.
    "to\u212aen=abc",
    "ba\u017fic YWxpY2U6c2VjcmV0",
    "\u017fecret: s3cret",
    "pa\u017f\u017fword=s3cret",
    "authorızation: x",
    "\u00e9 EYJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
    "ALICE:$2Y$04$IqVAe3RQasZsPrfIqRW8Juy9WX6VBHHguZmwILWsiwSAh1S.4bf1a",
    "OCR_0123456789ab_" + "A" * 43,
])
def test_redact_equals_the_full_substitution(text):
    assert redact.redact(text) == _full_redaction(text)


@pytest.mark.parametrize("text", [
    "authorization", "BASIC", "Bearer", "eyJ", "PASSW", "toKen", "Secret", "ocr_", "OCR_",
    "$2a$", "$2B$", "$2y$", "x to\u212aen", "ba\u017fic", "authorızation",
    "127.0.0.1 GET /v2/ 200 0 2 0.0010 \"-\" 5f0c", "$2c$", "ocr-", "eyk", "",
])
def test_the_quick_check_is_the_regex(text):
    """The words test on ASCII text and the regex elsewhere agree with the regex."""
    assert redact._may_hold_secret(text) is (redact._ANY_SECRET.search(text) is not None)


def test_redact_still_masks_a_robot_token():
    assert ROBOT not in redact.redact(f"robot {ROBOT} used")


def _request(method: str = "GET") -> SimpleNamespace:
    return SimpleNamespace(version=(1, 1), method=method, headers=[], path="/v2/",
                           should_close=lambda: False)


def _wire(response_class: type, headers: list[tuple[str, str]], writes: list[bytes],
          method: str = "GET", alive: bool = True) -> bytes:
    """What ``response_class`` puts on a socket for these headers and writes."""
    ours, peer = socket.socketpair()
    try:
        RegistryResponse.worker = SimpleNamespace(alive=alive)
        cfg = SimpleNamespace(is_ssl=False, sendfile=True)
        response = response_class(_request(method), ours, cfg)
        response.start_response("200 OK", headers)
        for data in writes:
            response.write(data)
        response.close()
        ours.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := peer.recv(65536):
            received += chunk
        # The Date header can tick between the two responses.
        return re.sub(rb"Date: [^\r]*\r\n", b"", received)
    finally:
        ours.close()
        peer.close()


@pytest.mark.parametrize(("headers", "writes", "method"), [
    ([("Content-Type", "application/json"), ("Content-Length", "2")], [b"{}"], "GET"),
    ([("Content-Type", "application/json")], [b"abc", b"def"], "GET"),  # chunked
    ([("Content-Length", "2")], [b"abcdef"], "GET"),  # more than announced: cut
    ([("Content-Length", "0")], [b""], "GET"),
    ([("Content-Type", "text/plain")], [b""], "GET"),  # chunked, empty first write
    ([("Content-Length", "527")], [], "HEAD"),
    ([("Content-Length", "70000")], [b"x" * 70000], "GET"),  # too big to coalesce
])
def test_worker_response_bytes_equal_gunicorns(headers, writes, method):
    assert _wire(RegistryResponse, headers, writes, method) == \
        _wire(wsgi.Response, headers, writes, method)


def test_small_body_leaves_with_its_headers():
    ours, peer = socket.socketpair()
    sent: list[bytes] = []

    class Recording:
        def sendall(self, data: bytes) -> None:
            sent.append(bytes(data))
            ours.sendall(data)

    try:
        RegistryResponse.worker = SimpleNamespace(alive=True)
        response = RegistryResponse(_request(), Recording(),
                                    SimpleNamespace(is_ssl=False, sendfile=True))
        response.start_response("200 OK", [("Content-Length", "2")])
        response.write(b"{}")
        response.close()
        assert len(sent) == 1 and sent[0].endswith(b"\r\n\r\n{}")
    finally:
        ours.close()
        peer.close()


def test_a_stopping_worker_answers_connection_close():
    wire = _wire(RegistryResponse, [("Content-Length", "2")], [b"{}"], alive=False)
    assert b"Connection: close\r\n" in wire
    wire = _wire(RegistryResponse, [("Content-Length", "2")], [b"{}"], alive=True)
    assert b"Connection: keep-alive\r\n" in wire
