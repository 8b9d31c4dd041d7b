"""HTTP/1.1 framing on a raw connection: bad chunked bodies, a missing Host, pipelining.

These talk to the registry's own server (no proxy in front: a proxy would answer
for it), byte for byte, with the raw-socket helpers of tests/helpers.py.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers import (
    OCI_MANIFEST,
    make_image,
    push_blob,
    raw_exchange,
    sha256,
    start_upload,
)

pytestmark = pytest.mark.single_node("raw HTTP framing of the registry's own server")


def _request(method: str, target: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: registry.test"]
    if body and "Transfer_Encoding" not in headers:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _upload_offset(location: str) -> int:
    r = requests.get(location)
    assert r.status_code == 204, r.text
    return int(r.headers["Range"].split("-")[1]) + 1


def _address(registry) -> tuple[str, int]:
    parts = urlsplit(registry.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


# -- malformed chunked transfer encoding ---------------------------------------------
@pytest.mark.parametrize("body", [
    pytest.param(b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n", id="bad-chunk-size"),
    pytest.param(b"5\r\nhelloXX5\r\nworld\r\n0\r\n\r\n", id="no-crlf-after-chunk"),
    pytest.param(b"\r\nhello\r\n0\r\n\r\n", id="empty-chunk-size"),
    pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", id="negative-chunk-size"),
])
def test_malformed_chunked_patch_is_400_and_leaves_the_offset(registry, repo, body):
    location = start_upload(registry.url, repo)
    assert requests.patch(location, data=b"abc").status_code == 202
    path = urlsplit(location)
    target = path.path + (f"?{path.query}" if path.query else "")
    request = _request("PATCH", target, body, Transfer_Encoding="chunked",
                       Content_Type="application/octet-stream")
    (response,) = raw_exchange(*_address(registry), request, ["PATCH"])
    assert response.status == 400, (response.status, response.body)
    assert response.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    # The connection cannot be read further: the server says so and closes it.
    assert response.headers.get("Connection", "").lower() == "close"
    assert _upload_offset(location) == 3
    # The upload goes on from where it was.
    r = requests.put(location, params={"digest": sha256(b"abcdef")}, data=b"def")
    assert r.status_code == 201, r.text


def test_malformed_chunked_manifest_put_is_400(registry, repo):
    body = b"5\r\n{\"a\":\r\nzz\r\n0\r\n\r\n"
    request = _request("PUT", f"/v2/{repo}/manifests/x", body, Transfer_Encoding="chunked",
                       Content_Type=OCI_MANIFEST)
    (response,) = raw_exchange(*_address(registry), request, ["PUT"])
    assert response.status == 400, (response.status, response.body)
    assert response.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    assert requests.head(f"{registry.url}/v2/{repo}/manifests/x").status_code == 404


def test_well_formed_chunked_patch_still_works(registry, repo):
    location = start_upload(registry.url, repo)
    path = urlsplit(location)
    target = path.path + (f"?{path.query}" if path.query else "")
    body = b"3\r\nabc\r\n3;ext=1\r\ndef\r\n0\r\nX-Trailer: t\r\n\r\n"
    request = _request("PATCH", target, body, Transfer_Encoding="chunked")
    (response,) = raw_exchange(*_address(registry), request, ["PATCH"])
    assert response.status == 202, (response.status, response.body)
    assert _upload_offset(location) == 6


# -- Host -----------------------------------------------------------------------------
def test_http11_request_without_host_is_400(registry):
    (response,) = raw_exchange(*_address(registry), b"GET /v2/ HTTP/1.1\r\n\r\n", ["GET"])
    assert response.status == 400, (response.status, response.body)
    assert response.json()["errors"]


def test_http11_request_with_two_hosts_is_400(registry):
    request = b"GET /v2/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"
    (response,) = raw_exchange(*_address(registry), request, ["GET"])
    assert response.status == 400, (response.status, response.body)


def test_http10_request_without_host_is_served(registry):
    (response,) = raw_exchange(*_address(registry), b"GET /v2/ HTTP/1.0\r\n\r\n", ["GET"])
    assert response.status == 200, (response.status, response.body)


def test_http11_request_with_host_is_served(registry):
    request = b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n"
    (response,) = raw_exchange(*_address(registry), request, ["GET"])
    assert response.status == 200, (response.status, response.body)


# -- pipelining -----------------------------------------------------------------------
@pytest.fixture
def image(registry, repo) -> tuple[str, bytes]:
    body = json.dumps(make_image(registry.url, repo, layers=1)).encode()
    r = requests.put(f"{registry.url}/v2/{repo}/manifests/v1", data=body,
                     headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return repo, body


def test_two_pipelined_gets_are_both_answered_in_order(registry, image):
    repo, body = image
    request = (_request("GET", f"/v2/{repo}/manifests/v1", Accept=OCI_MANIFEST)
               + _request("GET", f"/v2/{repo}/tags/list"))
    first, second = raw_exchange(*_address(registry), request, ["GET", "GET"])
    assert first.status == 200 and first.body == body
    assert second.status == 200 and second.json()["tags"] == ["v1"]


def test_two_pipelined_heads_are_both_answered_in_order(registry, image):
    repo, body = image
    request = (_request("HEAD", f"/v2/{repo}/manifests/v1", Accept=OCI_MANIFEST)
               + _request("HEAD", f"/v2/{repo}/manifests/nope", Accept=OCI_MANIFEST))
    first, second = raw_exchange(*_address(registry), request, ["HEAD", "HEAD"])
    assert first.status == 200 and first.headers["Docker-Content-Digest"] == sha256(body)
    assert second.status == 404


def test_pipelined_patch_with_a_body_then_get(registry, repo):
    location = start_upload(registry.url, repo)
    path = urlsplit(location)
    target = path.path + (f"?{path.query}" if path.query else "")
    data = os.urandom(3000)
    request = _request("PATCH", target, data) + _request("GET", target)
    first, second = raw_exchange(*_address(registry), request, ["PATCH", "GET"])
    assert first.status == 202, first.body
    assert second.status == 204 and second.headers["Range"] == f"0-{len(data) - 1}"


def test_pipelined_chunked_patch_then_get(registry, repo):
    location = start_upload(registry.url, repo)
    path = urlsplit(location)
    target = path.path + (f"?{path.query}" if path.query else "")
    body = b"4\r\nabcd\r\n0\r\n\r\n"
    request = _request("PATCH", target, body, Transfer_Encoding="chunked") + _request(
        "GET", target)
    first, second = raw_exchange(*_address(registry), request, ["PATCH", "GET"])
    assert first.status == 202, first.body
    assert second.status == 204 and second.headers["Range"] == "0-3"


def test_pipelined_manifest_put_then_get(registry, repo):
    body = json.dumps(make_image(registry.url, repo, layers=1)).encode()
    request = (_request("PUT", f"/v2/{repo}/manifests/v2", body, Content_Type=OCI_MANIFEST)
               + _request("GET", f"/v2/{repo}/manifests/v2", Accept=OCI_MANIFEST))
    first, second = raw_exchange(*_address(registry), request, ["PUT", "GET"])
    assert first.status == 201, first.body
    assert second.status == 200 and second.body == body


def test_pipelined_request_after_a_body_the_server_did_not_read(registry, repo):
    """A refused PATCH (unknown upload) leaves its body unread: the next request is
    found after it all the same."""
    digest = push_blob(registry.url, repo, b"blob")
    request = (_request("PATCH", f"/v2/{repo}/blobs/uploads/nope", b"x" * 500)
               + _request("HEAD", f"/v2/{repo}/blobs/{digest}"))
    first, second = raw_exchange(*_address(registry), request, ["PATCH", "HEAD"])
    assert first.status == 404
    assert second.status == 200 and second.headers["Content-Length"] == "4"


def test_three_pipelined_requests_with_bodies(registry, repo):
    location = start_upload(registry.url, repo)
    path = urlsplit(location)
    target = path.path + (f"?{path.query}" if path.query else "")
    request = (_request("PATCH", target, b"a" * 10, Content_Range="0-9")
               + _request("PATCH", target, b"b" * 10, Content_Range="10-19")
               + _request("GET", target))
    responses = raw_exchange(*_address(registry), request, ["PATCH", "PATCH", "GET"])
    assert [r.status for r in responses] == [202, 202, 204]
    assert responses[2].headers["Range"] == "0-19"
