"""Through gunicorn (2 workers): the fast read route answers what Flask does.

A plain manifest or blob HEAD/GET takes the fast route (web/fast_reads.py); the
same request with a query string (which Flask's routes ignore) goes through Flask.
So do ``GET``/``HEAD /v2/`` and a tags list (web/fast_listings.py); a tag added or
removed is in every worker's next list. Status, headers (names, order, values; not
Date and a blob's Expires) and body
(a blob's through sendfile) must match, and so must
the two access-log lines (but for the duration). That a tag moved or deleted by
another worker or server is seen at once is tests/api/test_read_consistency.py's
job (its plain reads take the fast route: tests/api/test_fast_reads.py::
test_plain_client_headers_take_the_fast_route).
"""

from __future__ import annotations

import http.client
import json
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


def _fast_and_flask(registry, path: str, method: str = "GET",
                    headers: dict[str, str] | None = None) -> tuple:
    """``path`` as it is (the fast route) and with a query key Flask ignores (Flask's),
    compared: status, headers but the request id and Date, body, access-log lines."""
    ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    mark = "&" if "?" in path else "?"
    fast = _raw(registry.url + path, method, {**(headers or {}), "X-Request-ID": ids[0]})
    flask = _raw(registry.url + path + mark + "through=flask", method,
                 {**(headers or {}), "X-Request-ID": ids[1]})
    assert fast[0] == flask[0] == 200, (fast, flask)
    assert _without_date(fast[1]) == [
        (k, ids[0] if k == "x-request-id" else v) for k, v in _without_date(flask[1])]
    assert fast[2] == flask[2]
    assert _log_line(registry.log_path, ids[0]) == _log_line(registry.log_path, ids[1])
    return fast


@pytest.mark.single_node
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_server_answers_base_fast_and_flask_alike(registry, method: str) -> None:
    status, headers, body = _fast_and_flask(registry, "/v2/", method)
    assert body == (b"{}" if method == "GET" else b"")
    assert ("Docker-Distribution-API-Version", "registry/2.0") in headers


@pytest.mark.single_node
def test_server_answers_tags_lists_fast_and_flask_alike(registry, repo) -> None:
    manifest = make_image(registry.url, repo, layers=1)
    for tag in ("b", "a", "c"):
        assert put_manifest(registry.url, repo, tag, manifest).status_code == 201
    path = f"/v2/{repo}/tags/list"
    _, _, body = _fast_and_flask(registry, path)
    assert json.loads(body) == {"name": repo, "tags": ["a", "b", "c"]}
    _, headers, _ = _fast_and_flask(registry, path + "?n=2")
    assert ("Link", f'</v2/{repo}/tags/list?n=2&last=b>; rel="next"') in headers
    _fast_and_flask(registry, path + "?n=2&last=b")
    _fast_and_flask(registry, path + "?n=0")
    # A tag added, then removed, through the server: every worker's next list has it,
    # then not (each page is cached per worker, under the repository's tags_version).
    _every_worker_lists(registry, path, ["a", "b", "c"])
    assert put_manifest(registry.url, repo, "d", manifest).status_code == 201
    _every_worker_lists(registry, path, ["a", "b", "c", "d"])
    status, _, _ = _raw(f"{registry.url}/v2/{repo}/manifests/d", "DELETE", {})
    assert status == 202
    _every_worker_lists(registry, path, ["a", "b", "c"])


def _every_worker_lists(registry, path: str, tags: list[str]) -> None:
    for _ in range(8):  # fresh connections: both workers answer some
        status, _, body = _raw(registry.url + path, "GET", {})
        assert status == 200 and json.loads(body)["tags"] == tags
