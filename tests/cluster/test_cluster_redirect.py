"""Blob GETs on S3: a 307 to a presigned URL on the store (storage.s3.redirect, the
default), or the registry streams the bytes itself, with Range support."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from tests.helpers import error_codes, push_blob, sha256

MiB = 1 << 20


@pytest.fixture
def repo() -> str:
    return f"redirect/{uuid.uuid4().hex[:10]}"


def test_blob_get_redirects_to_a_presigned_url_on_the_store(cluster, repo):
    data = os.urandom(3 * MiB + 17)
    digest = push_blob(cluster.url, repo, data)
    r = requests.get(f"{cluster.url}/v2/{repo}/blobs/{digest}", allow_redirects=False)
    assert r.status_code == 307
    assert r.headers["Docker-Content-Digest"] == digest
    location = r.headers["Location"]
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == cluster.s3.endpoint_url
    assert parts.path.startswith(f"/{cluster.bucket}/{cluster.prefix}blobs/sha256/")
    # The store serves the bytes to anyone holding the URL, and parts of them.
    direct = requests.get(location)
    assert direct.status_code == 200
    assert direct.content == data
    ranged = requests.get(location, headers={"Range": "bytes=1000-1999"})
    assert ranged.status_code == 206
    assert ranged.content == data[1000:2000]
    # A client following the redirect gets the blob.
    assert sha256(requests.get(f"{cluster.url}/v2/{repo}/blobs/{digest}").content) == digest
    # Only a signed URL works: the bucket is not public, and the signature counts.
    unsigned = urlunsplit(parts._replace(query=""))
    assert requests.get(unsigned).status_code == 403
    tampered = location.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert requests.get(tampered).status_code == 403


def test_head_unknown_and_foreign_blobs_are_answered_by_the_registry(cluster, repo):
    data = os.urandom(2048)
    digest = push_blob(cluster.url, repo, data)
    head = requests.head(f"{cluster.url}/v2/{repo}/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    # No redirect that would reveal where a blob of another repository lives.
    for url in (f"{cluster.url}/v2/{repo}-other/blobs/{digest}",
                f"{cluster.url}/v2/{repo}/blobs/{sha256(b'never pushed')}"):
        r = requests.get(url, allow_redirects=False)
        assert r.status_code == 404
        assert error_codes(r) == ["BLOB_UNKNOWN"]


def test_redirect_endpoint_url_is_the_address_clients_get(make_cluster, repo, seaweedfs):
    public = seaweedfs.endpoint_url.replace("127.0.0.1", "localhost")
    cluster = make_cluster(size=1, settings={"storage": {"s3": {
        "redirect_endpoint_url": public}}})
    data = os.urandom(4096)
    digest = push_blob(cluster.url, repo, data)
    r = requests.get(f"{cluster.url}/v2/{repo}/blobs/{digest}", allow_redirects=False)
    assert r.status_code == 307
    assert r.headers["Location"].startswith(public + "/")
    assert requests.get(r.headers["Location"]).content == data


def test_without_redirect_the_registry_streams_blobs_with_ranges(make_cluster, repo):
    cluster = make_cluster(size=2, settings={"storage": {"s3": {"redirect": False}}})
    data = os.urandom(9 * MiB + 5)
    digest = push_blob(cluster.url, repo, data)
    for url in [cluster.url, *(inst.url for inst in cluster.instances)]:
        r = requests.get(f"{url}/v2/{repo}/blobs/{digest}", allow_redirects=False, stream=True)
        assert r.status_code == 200
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Content-Length"] == str(len(data))
        assert sha256(b"".join(r.iter_content(MiB))) == digest
    blob = f"{cluster.url}/v2/{repo}/blobs/{digest}"
    # Across the 8 MiB part boundary, at the end, from the end, and beyond it.
    r = requests.get(blob, headers={"Range": f"bytes={8 * MiB - 10}-{8 * MiB + 9}"})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {8 * MiB - 10}-{8 * MiB + 9}/{len(data)}"
    assert r.content == data[8 * MiB - 10:8 * MiB + 10]
    r = requests.get(blob, headers={"Range": f"bytes={len(data) - 3}-"})
    assert (r.status_code, r.content) == (206, data[-3:])
    r = requests.get(blob, headers={"Range": "bytes=-100"})
    assert (r.status_code, r.content) == (206, data[-100:])
    r = requests.get(blob, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"
    r = requests.get(blob, headers={"If-None-Match": f'"{digest}"'})
    assert r.status_code == 304
    head = requests.head(blob)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
