"""A plain blob GET/HEAD (web/fast_blobs.py) answers exactly what send_file does.

In process: both builders on the same file and request, header by header (names,
order, values; Date and Expires are the clock's, checked for their relation).
Through the real server: a request with a harmless conditional header (an
If-Modified-Since long past, so still a full 200) takes send_file's path; the plain
one takes the lean path; status, headers and body must match.
"""

from __future__ import annotations

import http.client
import os
import urllib.parse
from pathlib import Path

import pytest
from flask import Flask, send_file
from werkzeug.http import parse_date

from ociregistry.web import fast_blobs
from tests.helpers import push_blob

CLOCK = ("date", "expires")


def _send_file_answer(app: Flask, method: str, path: str, digest: str,
                      headers: dict[str, str] | None = None) -> tuple[int, list, bytes]:
    with app.test_request_context("/x", method=method, headers=headers or {}):
        from flask import request

        if headers is None:
            assert fast_blobs.plain(request.environ)
            response = fast_blobs.file_response(request.environ, path, digest)
        else:
            response = send_file(path, mimetype="application/octet-stream", etag=digest,
                                 conditional=True, max_age=fast_blobs.MAX_AGE)
        body = b"" if method == "HEAD" else b"".join(response.response)
        response.close()
        return response.status_code, list(response.headers.items()), body


def _without_clock(headers: list) -> list:
    return [(k.lower(), v) for k, v in headers if k.lower() not in CLOCK]


def _clock_consistent(headers: list) -> None:
    values = {k.lower(): v for k, v in headers}
    date, expires = parse_date(values["date"]), parse_date(values["expires"])
    assert date is not None and expires is not None
    assert abs((expires - date).total_seconds() - fast_blobs.MAX_AGE) <= 1


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_lean_answer_is_send_files(tmp_path: Path, method: str) -> None:
    app = Flask(__name__)
    hexdigest = "ab" * 32
    path = tmp_path / hexdigest
    path.write_bytes(os.urandom(5000))
    digest = "sha256:" + hexdigest
    lean = _send_file_answer(app, method, str(path), digest)
    # send_file given no conditional header at all (the empty dict) is the reference.
    reference = _send_file_answer(app, method, str(path), digest, headers={})
    assert lean[0] == reference[0] == 200
    assert _without_clock(lean[1]) == _without_clock(reference[1])
    assert [k for k, _ in lean[1]] == [k for k, _ in reference[1]]  # same order
    _clock_consistent(lean[1])
    _clock_consistent(reference[1])
    assert lean[2] == reference[2] == (path.read_bytes() if method == "GET" else b"")


@pytest.mark.parametrize("header", ["Range", "If-Range", "If-None-Match", "If-Match",
                                    "If-Modified-Since", "If-Unmodified-Since"])
def test_conditional_requests_are_not_plain(header: str) -> None:
    app = Flask(__name__)
    with app.test_request_context("/x", headers={header: "x"}):
        from flask import request

        assert not fast_blobs.plain(request.environ)


def _raw(url: str, method: str, headers: dict[str, str]) -> tuple[int, list, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, parts.path, headers=headers)
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_server_answers_plain_and_conditional_alike(registry, repo, method: str) -> None:
    data = os.urandom(20_000)
    digest = push_blob(registry.url, repo, data)
    url = f"{registry.url}/v2/{repo}/blobs/{digest}"
    lean = _raw(url, method, {})
    full = _raw(url, method, {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert lean[0] == full[0] == 200
    ignore = (*CLOCK, "x-request-id")
    assert [(k.lower(), v) for k, v in lean[1] if k.lower() not in ignore] == \
        [(k.lower(), v) for k, v in full[1] if k.lower() not in ignore]
    assert lean[2] == full[2] == (data if method == "GET" else b"")
