"""Blob GET / HEAD / DELETE: headers, ranges, conditional requests, isolation."""

from __future__ import annotations

import os

import pytest
import requests

from tests.helpers import assert_error, push_blob, sha256


@pytest.fixture
def blob(registry, repo):
    data = os.urandom(10_000)
    digest = push_blob(registry.url, repo, data)
    return data, digest, f"{registry.url}/v2/{repo}/blobs/{digest}"


def test_get_returns_the_bytes_with_digest_length_and_etag(blob):
    data, digest, url = blob
    r = requests.get(url)
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Length"] == str(len(data))
    assert digest in r.headers["ETag"]


def test_head_has_the_headers_but_no_body(blob):
    data, digest, url = blob
    r = requests.head(url)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Length"] == str(len(data))
    assert digest in r.headers["ETag"]


def test_range_request_answers_206_with_content_range(blob):
    data, digest, url = blob
    r = requests.get(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.content == data[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert r.headers["Content-Length"] == "100"
    assert r.headers["Docker-Content-Digest"] == digest


def test_open_ended_and_suffix_ranges(blob):
    data, _, url = blob
    r = requests.get(url, headers={"Range": "bytes=9000-"})
    assert r.status_code == 206
    assert r.content == data[9000:]
    assert r.headers["Content-Range"] == f"bytes 9000-{len(data) - 1}/{len(data)}"
    r = requests.get(url, headers={"Range": "bytes=-10"})
    assert r.status_code == 206
    assert r.content == data[-10:]


def test_unsatisfiable_range_answers_416_with_content_range(blob):
    data, _, url = blob
    r = requests.get(url, headers={"Range": f"bytes={len(data)}-{len(data) + 10}"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"


def test_if_none_match_answers_304(blob):
    _, _, url = blob
    etag = requests.head(url).headers["ETag"]
    r = requests.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    # A different ETag still gets the content.
    r = requests.get(url, headers={"If-None-Match": '"sha256:other"'})
    assert r.status_code == 200


def test_empty_blob(registry, repo):
    digest = push_blob(registry.url, repo, b"")
    r = requests.get(f"{registry.url}/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Length"] == "0"


def test_unknown_blob_is_404_blob_unknown(registry, repo):
    push_blob(registry.url, repo, b"something so the repository exists")
    url = f"{registry.url}/v2/{repo}/blobs/{sha256(os.urandom(8))}"
    assert_error(requests.get(url), 404, "BLOB_UNKNOWN")
    assert requests.head(url).status_code == 404


def test_blob_of_another_repository_is_404_without_a_mount(registry, repo):
    data = os.urandom(100)
    digest = push_blob(registry.url, repo, data)
    other = repo + "-other"
    push_blob(registry.url, other, b"unrelated")
    assert requests.get(f"{registry.url}/v2/{repo}/blobs/{digest}").status_code == 200
    assert_error(requests.get(f"{registry.url}/v2/{other}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert requests.head(f"{registry.url}/v2/{other}/blobs/{digest}").status_code == 404


def test_delete_answers_202_then_the_blob_is_gone(blob):
    _, digest, url = blob
    r = requests.delete(url)
    assert r.status_code == 202
    assert_error(requests.get(url), 404, "BLOB_UNKNOWN")
    assert requests.head(url).status_code == 404
    assert_error(requests.delete(url), 404, "BLOB_UNKNOWN")


def test_delete_in_one_repository_keeps_it_in_another(registry, repo):
    data = os.urandom(100)
    digest = push_blob(registry.url, repo, data)
    other = repo + "-b"
    push_blob(registry.url, other, data)
    assert requests.delete(f"{registry.url}/v2/{repo}/blobs/{digest}").status_code == 202
    r = requests.get(f"{registry.url}/v2/{other}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == data


@pytest.mark.parametrize(
    "bad",
    [
        "sha256:abc",  # too short
        "sha256:" + "g" * 64,  # not hex
        "sha256:" + "A" * 64,  # uppercase hex
        "md5:" + "0" * 32,  # unsupported algorithm
        "notadigest",
    ],
)
def test_invalid_digest_is_400_digest_invalid(registry, repo, bad):
    push_blob(registry.url, repo, b"x")
    assert_error(requests.get(f"{registry.url}/v2/{repo}/blobs/{bad}"), 400, "DIGEST_INVALID")
    assert requests.head(f"{registry.url}/v2/{repo}/blobs/{bad}").status_code == 400
    assert_error(requests.delete(f"{registry.url}/v2/{repo}/blobs/{bad}"), 400, "DIGEST_INVALID")


def test_large_blob_streams_back_intact(registry, repo):
    data = os.urandom(5 * 1024 * 1024 + 7)
    digest = push_blob(registry.url, repo, data)
    r = requests.get(f"{registry.url}/v2/{repo}/blobs/{digest}", stream=True)
    assert r.status_code == 200
    received = b"".join(r.iter_content(65536))
    assert sha256(received) == digest
    assert len(received) == len(data)


def test_blob_can_be_pushed_again_after_delete(blob, registry, repo):
    data, digest, url = blob
    assert requests.delete(url).status_code == 202
    assert push_blob(registry.url, repo, data) == digest
    r = requests.get(url)
    assert r.status_code == 200
    assert r.content == data


def test_range_requests_read_at_their_offset_and_honour_if_range(registry, repo):
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = push_blob(registry.url, repo, data)
    url = f"{registry.url}/v2/{repo}/blobs/{digest}"
    start = len(data) - (1 << 20) - 5
    r = requests.get(url, headers={"Range": f"bytes={start}-{start + (1 << 20) - 1}"})
    assert r.status_code == 206
    assert r.content == data[start : start + (1 << 20)]
    assert r.headers["Content-Range"] == f"bytes {start}-{start + (1 << 20) - 1}/{len(data)}"
    assert r.headers["Docker-Content-Digest"] == digest
    r = requests.get(url, headers={"Range": "bytes=-10"})  # the last ten bytes
    assert r.status_code == 206 and r.content == data[-10:]
    # If-Range with another validator: the whole blob, 200
    r = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": '"sha256:' + "0" * 64 + '"'})
    assert r.status_code == 200 and r.content == data
    r = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": f'"{digest}"'})
    assert r.status_code == 206 and r.content == data[:10]
    # several ranges at once: a full answer is allowed and simplest for clients
    r = requests.get(url, headers={"Range": "bytes=0-1,5-6"})
    assert r.status_code == 200 and r.content == data
    r = requests.head(url, headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.headers["Content-Length"] == "100"


def test_a_malformed_range_is_416(registry, repo):
    digest = push_blob(registry.url, repo, os.urandom(1000))
    url = f"{registry.url}/v2/{repo}/blobs/{digest}"
    for value in ("bytes=500-0", "bytes=abc", "lines=0-1"):
        r = requests.get(url, headers={"Range": value})
        assert_error(r, 416, "RANGE_INVALID")
        assert r.headers["Content-Range"] == "bytes */1000"
