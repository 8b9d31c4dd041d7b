"""Through gunicorn (2 workers): the fast read route answers what Flask does.

A plain manifest or blob HEAD/GET takes the fast route (web/fast_reads.py); the
same request with a query string (which Flask's routes ignore) goes through Flask.
Status, headers (names, order, values; not Date and a blob's Expires) and body
(a blob's through sendfile) must match, and so must
the two access-log lines (but for the duration). That a tag moved or deleted by
another worker or server is seen at once is tests/api/test_read_consistency.py's
job (its plain reads take the fast route: tests/api/test_fast_reads.py::
test_plain_client_headers_take_the_fast_route).
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.parse
import uuid

import pytest

from tests.helpers import OCI_INDEX, OCI_MANIFEST, make_image, push_blob, put_manifest


def _raw(url: str, method: str, headers: dict[str, str]) -> tuple[int, list, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        conn.close()


def _without_date(headers: list) -> list:
    return [(k.lower(), v) for k, v in headers if k.lower() not in ("date", "expires")]


def _log_line(path, request_id: str) -> list[str]:
    """The access-log line of ``request_id`` (written when the body has gone: poll)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if line.endswith(" " + request_id) and " /v2/" in line:
                words = line.split(" ")
                start = next(i for i, w in enumerate(words) if w in ("GET", "HEAD")) - 1
                words = words[start:]
                del words[-3]  # the duration
                return words[:-1]  # and the request id itself
        time.sleep(0.2)
    raise AssertionError(f"no access-log line for {request_id}")


@pytest.mark.single_node
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_server_answers_fast_and_flask_alike(registry, repo, method: str) -> None:
    manifest = make_image(registry.url, repo, layers=1)
    r = put_manifest(registry.url, repo, "v1", manifest)
    assert r.status_code == 201, r.text
    digest = r.headers["Docker-Content-Digest"]
    for ref in ("v1", digest):
        for accept in ({}, {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}):
            url = f"{registry.url}/v2/{repo}/manifests/{ref}"
            ids = [uuid.uuid4().hex, uuid.uuid4().hex]
            fast = _raw(url, method, {**accept, "X-Request-ID": ids[0]})
            # A query string sends the request to Flask, whose manifest route ignores it.
            flask = _raw(url + "?through=flask", method, {**accept, "X-Request-ID": ids[1]})
            assert fast[0] == flask[0] == 200
            assert _without_date(fast[1]) == [
                (k, ids[0] if k == "x-request-id" else v) for k, v in _without_date(flask[1])]
            assert fast[2] == flask[2]
            assert (fast[2] != b"") is (method == "GET")
            assert _log_line(registry.log_path, ids[0]) == _log_line(registry.log_path, ids[1])


@pytest.mark.single_node
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_server_answers_blobs_fast_and_flask_alike(registry, repo, method: str) -> None:
    data = os.urandom(200_000)
    url = f"{registry.url}/v2/{repo}/blobs/{push_blob(registry.url, repo, data)}"
    ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    fast = _raw(url, method, {"X-Request-ID": ids[0]})
    flask = _raw(url + "?through=flask", method, {"X-Request-ID": ids[1]})
    assert fast[0] == flask[0] == 200
    assert [k for k, _ in fast[1]] == [k for k, _ in flask[1]]
    assert _without_date(fast[1]) == [
        (k, ids[0] if k == "x-request-id" else v) for k, v in _without_date(flask[1])]
    assert fast[2] == flask[2] == (data if method == "GET" else b"")
    # Logged once the body has gone, with its size (the file wrapper's close).
    assert _log_line(registry.log_path, ids[0]) == _log_line(registry.log_path, ids[1])


@pytest.mark.single_node
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_server_answers_blob_misses_fast_and_flask_alike(registry, repo, method: str) -> None:
    """A push's first look at a layer (a blob HEAD that answers 404), in a repository
    that has blobs and in one that does not exist: the same envelope both routes."""
    push_blob(registry.url, repo, os.urandom(100))
    unknown = "sha256:" + os.urandom(32).hex()
    for name in (repo, f"{repo}-never-pushed"):
        url = f"{registry.url}/v2/{name}/blobs/{unknown}"
        ids = [uuid.uuid4().hex, uuid.uuid4().hex]
        fast = _raw(url, method, {"X-Request-ID": ids[0]})
        flask = _raw(url + "?through=flask", method, {"X-Request-ID": ids[1]})
        assert fast[0] == flask[0] == 404
        assert _without_date(fast[1]) == [
            (k, ids[0] if k == "x-request-id" else v) for k, v in _without_date(flask[1])]
        assert fast[2] == flask[2]
        assert (b"BLOB_UNKNOWN" in fast[2]) is (method == "GET")
        assert _log_line(registry.log_path, ids[0]) == _log_line(registry.log_path, ids[1])
