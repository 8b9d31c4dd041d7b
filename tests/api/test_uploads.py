"""Blob uploads: sessions, monolithic and chunked pushes, mounts, failures, restarts."""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import requests

from tests.helpers import (
    absolute,
    assert_error,
    push_blob,
    sha256,
    sha512,
    start_upload,
)


def _patch(location: str, data: bytes, start: int | None = None) -> requests.Response:
    headers = {"Content-Type": "application/octet-stream"}
    if start is not None:
        headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
    return requests.patch(location, data=data, headers=headers)


def _blob(registry, repo: str, digest: str) -> requests.Response:
    return requests.get(f"{registry.url}/v2/{repo}/blobs/{digest}")


# -- sessions -----------------------------------------------------------------
def test_post_opens_a_session_with_location_and_range(registry, repo):
    r = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    assert r.headers["Location"]
    assert r.headers["Range"] == "0-0"
    # Each POST gets its own session.
    r2 = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/")
    assert r2.headers["Location"] != r.headers["Location"]
    status = requests.get(absolute(registry.url, r.headers["Location"]))
    assert status.status_code == 204


def test_status_get_answers_204_with_range_and_location(registry, repo):
    location = start_upload(registry.url, repo)
    assert _patch(location, b"0123456789", 0).status_code == 202
    r = requests.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-9"
    assert absolute(registry.url, r.headers["Location"]) == location
    assert r.content == b""


# -- monolithic -------------------------------------------------------------------
def test_monolithic_post_with_digest_answers_201(registry, repo):
    data = os.urandom(4096)
    digest = sha256(data)
    r = requests.post(
        f"{registry.url}/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == digest
    blob = requests.get(absolute(registry.url, r.headers["Location"]))
    assert blob.status_code == 200
    assert blob.content == data


def test_monolithic_post_with_wrong_digest_stores_nothing(registry, repo):
    data = os.urandom(4096)
    claimed = sha256(b"something else")
    r = requests.post(
        f"{registry.url}/v2/{repo}/blobs/uploads/", params={"digest": claimed}, data=data
    )
    assert_error(r, 400, "DIGEST_INVALID")
    assert _blob(registry, repo, claimed).status_code == 404
    assert _blob(registry, repo, sha256(data)).status_code == 404


def test_post_then_put_monolithic(registry, repo):
    data = os.urandom(3000)
    digest = sha256(data)
    location = start_upload(registry.url, repo)
    r = requests.put(
        location,
        params={"digest": digest},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == digest
    assert absolute(registry.url, r.headers["Location"]).endswith(f"/v2/{repo}/blobs/{digest}")
    assert _blob(registry, repo, digest).content == data
    # The session is over once the blob is committed.
    assert_error(requests.get(location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_put_without_digest_is_rejected(registry, repo):
    location = start_upload(registry.url, repo)
    r = requests.put(location, data=b"abc")
    assert r.status_code == 400
    assert "DIGEST_INVALID" in [e["code"] for e in r.json()["errors"]]


# -- chunked ----------------------------------------------------------------------
def test_chunked_upload_in_order_with_content_range(registry, repo):
    data = os.urandom(3 * 100_000 + 123)
    location = start_upload(registry.url, repo)
    offset = 0
    for size in (100_000, 100_000, 100_000, 123):
        chunk = data[offset:offset + size]
        r = _patch(location, chunk, offset)
        assert r.status_code == 202, r.text
        offset += size
        assert r.headers["Range"] == f"0-{offset - 1}"
        # Clients follow the Location of the previous response.
        location = absolute(registry.url, r.headers["Location"])
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert _blob(registry, repo, sha256(data)).content == data


def test_put_may_carry_the_last_chunk(registry, repo):
    data = os.urandom(2000)
    location = start_upload(registry.url, repo)
    assert _patch(location, data[:1500], 0).status_code == 202
    r = requests.put(
        location,
        params={"digest": sha256(data)},
        data=data[1500:],
        headers={"Content-Range": f"1500-{len(data) - 1}",
                 "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert _blob(registry, repo, sha256(data)).content == data


def test_put_last_chunk_without_content_range(registry, repo):
    data = os.urandom(2000)
    location = start_upload(registry.url, repo)
    assert _patch(location, data[:999], 0).status_code == 202
    r = requests.put(location, params={"digest": sha256(data)}, data=data[999:])
    assert r.status_code == 201, r.text
    assert _blob(registry, repo, sha256(data)).content == data


def test_out_of_order_patch_is_416_with_location_and_range(registry, repo):
    data = os.urandom(300)
    location = start_upload(registry.url, repo)
    assert _patch(location, data[:100], 0).status_code == 202
    # Skips bytes 100..149.
    r = _patch(location, data[150:], 150)
    assert r.status_code == 416
    assert r.headers["Range"] == "0-99"
    assert absolute(registry.url, r.headers["Location"]) == location
    assert "errors" in r.json()
    # Re-sending an already received chunk is out of order too.
    r = _patch(location, data[:100], 0)
    assert r.status_code == 416
    assert r.headers["Range"] == "0-99"
    # The client recovers from the status endpoint and finishes the upload.
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-99"
    resume = int(status.headers["Range"].split("-")[1]) + 1
    assert _patch(location, data[resume:], resume).status_code == 202
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert _blob(registry, repo, sha256(data)).content == data


def test_out_of_order_final_chunk_on_put_is_416(registry, repo):
    data = os.urandom(200)
    location = start_upload(registry.url, repo)
    assert _patch(location, data[:100], 0).status_code == 202
    r = requests.put(
        location,
        params={"digest": sha256(data)},
        data=data[120:],
        headers={"Content-Range": f"120-{len(data) - 1}"},
    )
    assert r.status_code == 416
    assert r.headers["Range"] == "0-99"
    assert requests.get(location).headers["Range"] == "0-99"
    assert _blob(registry, repo, sha256(data)).status_code == 404


def test_content_range_not_matching_length_is_rejected(registry, repo):
    location = start_upload(registry.url, repo)
    r = requests.patch(location, data=b"abcdef", headers={"Content-Range": "0-9"})
    assert r.status_code in (400, 416)
    assert r.json()["errors"]
    assert requests.get(location).headers["Range"] == "0-0"
    assert requests.get(location).status_code == 204


def test_streamed_patch_without_content_range(registry, repo):
    parts = [os.urandom(65536) for _ in range(8)]
    data = b"".join(parts)
    location = start_upload(registry.url, repo)
    # A generator body goes out with Transfer-Encoding: chunked (no length).
    r = requests.patch(location, data=iter(parts))
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    location = absolute(registry.url, r.headers["Location"])
    # A second streamed chunk appends.
    r = requests.patch(location, data=iter([b"tail"]))
    assert r.status_code == 202
    assert r.headers["Range"] == f"0-{len(data) + 3}"
    r = requests.put(location, params={"digest": sha256(data + b"tail")})
    assert r.status_code == 201, r.text
    assert _blob(registry, repo, sha256(data + b"tail")).content == data + b"tail"


def test_digest_mismatch_on_put_leaves_no_blob(registry, repo):
    data = os.urandom(1000)
    wrong = sha256(b"not the data")
    location = start_upload(registry.url, repo)
    assert _patch(location, data, 0).status_code == 202
    r = requests.put(location, params={"digest": wrong})
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(_blob(registry, repo, wrong), 404, "BLOB_UNKNOWN")
    assert_error(_blob(registry, repo, sha256(data)), 404, "BLOB_UNKNOWN")
    # A later, correct push of the same bytes works.
    assert push_blob(registry.url, repo, data) == sha256(data)


def test_malformed_digest_on_put_is_digest_invalid(registry, repo):
    location = start_upload(registry.url, repo)
    r = requests.put(location, params={"digest": "sha256:nothex"}, data=b"abc")
    assert_error(r, 400, "DIGEST_INVALID")


# -- cancel and unknown sessions -------------------------------------------------
def test_delete_cancels_the_session(registry, repo):
    location = start_upload(registry.url, repo)
    assert _patch(location, b"partial", 0).status_code == 202
    r = requests.delete(location)
    assert r.status_code == 204
    assert_error(requests.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(_patch(location, b"more", 7), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.put(location, params={"digest": sha256(b"partial")}), 404,
                 "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_unknown_session_is_404_blob_upload_unknown(registry, repo):
    push_blob(registry.url, repo, b"x")
    location = f"{registry.url}/v2/{repo}/blobs/uploads/{uuid.uuid4()}"
    assert_error(requests.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(_patch(location, b"abc", 0), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.put(location, params={"digest": sha256(b"abc")}, data=b"abc"), 404,
                 "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    # An id that could never have been issued is unknown too, not a server error.
    garbage = f"{registry.url}/v2/{repo}/blobs/uploads/not..a..session"
    assert_error(requests.get(garbage), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(_patch(garbage, b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_session_of_one_repository_cannot_be_used_from_another(registry, repo):
    other = repo + "-other"
    location = start_upload(registry.url, repo)
    assert _patch(location, b"abc", 0).status_code == 202
    upload_id = urlsplit(location).path.rsplit("/", 1)[1]
    foreign = f"{registry.url}/v2/{other}/blobs/uploads/{upload_id}"
    assert_error(requests.get(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(_patch(foreign, b"def", 3), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.put(foreign, params={"digest": sha256(b"abc")}), 404,
                 "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.delete(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    # The session is untouched in its own repository.
    assert requests.get(location).headers["Range"] == "0-2"
    assert requests.put(location, params={"digest": sha256(b"abc")}).status_code == 201
    assert _blob(registry, other, sha256(b"abc")).status_code == 404


# -- sha512 ---------------------------------------------------------------------
def test_sha512_session_via_digest_algorithm(registry, repo):
    data = os.urandom(5000)
    digest = sha512(data)
    location = start_upload(registry.url, repo, **{"digest-algorithm": "sha512"})
    r = _patch(location, data[:2500], 0)
    assert r.status_code == 202
    r = _patch(absolute(registry.url, r.headers["Location"]), data[2500:], 2500)
    assert r.status_code == 202
    r = requests.put(absolute(registry.url, r.headers["Location"]), params={"digest": digest})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    blob = _blob(registry, repo, digest)
    assert blob.status_code == 200
    assert blob.content == data
    assert blob.headers["Docker-Content-Digest"] == digest


def test_sha512_monolithic_via_digest(registry, repo):
    data = os.urandom(5000)
    digest = sha512(data)
    r = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                      data=data)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert _blob(registry, repo, digest).content == data
    # sha256 and sha512 name different blobs; the sha256 one was never pushed.
    assert _blob(registry, repo, sha256(data)).status_code == 404


def test_sha512_digest_on_a_default_session(registry, repo):
    data = os.urandom(3000)
    location = start_upload(registry.url, repo)
    assert _patch(location, data, 0).status_code == 202
    r = requests.put(location, params={"digest": sha512(data)})
    assert r.status_code == 201, r.text
    assert _blob(registry, repo, sha512(data)).content == data


def test_unsupported_digest_algorithm_is_rejected(registry, repo):
    r = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/",
                      params={"digest-algorithm": "md5"})
    assert r.status_code == 400
    assert r.json()["errors"]


# -- mounts ---------------------------------------------------------------------
def test_mount_from_another_repository_answers_201(registry, repo):
    data = os.urandom(700)
    digest = push_blob(registry.url, repo, data)
    target = repo + "-mounted"
    r = requests.post(f"{registry.url}/v2/{target}/blobs/uploads/",
                      params={"mount": digest, "from": repo})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert absolute(registry.url, r.headers["Location"]).endswith(
        f"/v2/{target}/blobs/{digest}")
    assert _blob(registry, target, digest).content == data


def test_mount_without_from_answers_201_when_the_blob_exists(registry, repo):
    data = os.urandom(700)
    digest = push_blob(registry.url, repo, data)
    target = repo + "-nofrom"
    r = requests.post(f"{registry.url}/v2/{target}/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert _blob(registry, target, digest).content == data


def test_mount_of_unknown_blob_opens_a_session(registry, repo):
    data = os.urandom(700)
    digest = sha256(data)
    push_blob(registry.url, repo, b"the source repository exists")
    target = repo + "-target"
    r = requests.post(f"{registry.url}/v2/{target}/blobs/uploads/",
                      params={"mount": digest, "from": repo})
    assert r.status_code == 202
    location = absolute(registry.url, r.headers["Location"])
    assert _blob(registry, target, digest).status_code == 404
    # The session is usable for a normal upload.
    r = requests.put(location, params={"digest": digest}, data=data)
    assert r.status_code == 201, r.text
    assert _blob(registry, target, digest).content == data


def test_mount_from_a_repository_without_the_blob_does_not_leak_it(registry, repo):
    # The blob exists elsewhere, but "from" names a repository that lacks it:
    # either it is mounted (201) or a session is opened (202), never an error.
    data = os.urandom(300)
    digest = push_blob(registry.url, repo, data)
    target = repo + "-t"
    r = requests.post(f"{registry.url}/v2/{target}/blobs/uploads/",
                      params={"mount": digest, "from": repo + "-empty"})
    assert r.status_code in (201, 202)
    if r.status_code == 201:
        assert _blob(registry, target, digest).content == data


# -- failures and restarts --------------------------------------------------------
def _raw_truncated_patch(host: str, port: int, path: str, declared: int, body: bytes) -> None:
    """Send a PATCH announcing ``declared`` bytes, send fewer, and hang up."""
    head = (
        f"PATCH {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {declared}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        # Read whatever the server answers (if anything) until it closes.
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


def test_truncated_chunk_leaves_the_session_at_its_previous_offset(registry, repo):
    data = os.urandom(4000)
    location = start_upload(registry.url, repo)
    assert _patch(location, data[:1000], 0).status_code == 202
    parts = urlsplit(location)
    _raw_truncated_patch(parts.hostname, parts.port, parts.path, 100_000, data[1000:1500])
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-999"
    # The upload continues from there and the digest comes out right.
    assert _patch(location, data[1000:], 1000).status_code == 202
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert _blob(registry, repo, sha256(data)).content == data


def test_truncated_monolithic_post_stores_nothing(registry, repo):
    data = os.urandom(2000)
    digest = sha256(data)
    host, port = registry.host.split(":")
    head = (
        f"POST /v2/{repo}/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
        f"Host: {registry.host}\r\n"
        f"Content-Length: {len(data)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + data[:500])
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
    assert _blob(registry, repo, digest).status_code == 404
    # The same blob pushed properly afterwards is fine.
    assert push_blob(registry.url, repo, data) == digest


def test_upload_survives_a_registry_restart(fresh_registry):
    repo = "restart/blob"
    data = os.urandom(300_000)
    location = start_upload(fresh_registry.url, repo)
    r = _patch(location, data[:100_000], 0)
    assert r.status_code == 202
    location = absolute(fresh_registry.url, r.headers["Location"])
    fresh_registry.stop()
    fresh_registry.start()
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-99999"
    r = _patch(location, data[100_000:200_000], 100_000)
    assert r.status_code == 202
    location = absolute(fresh_registry.url, r.headers["Location"])
    r = requests.put(location, params={"digest": sha256(data)}, data=data[200_000:])
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    blob = requests.get(f"{fresh_registry.url}/v2/{repo}/blobs/{sha256(data)}")
    assert blob.content == data


def test_truncated_chunked_transfer_leaves_the_session_at_its_previous_offset(registry, repo):
    data = os.urandom(6000)
    location = start_upload(registry.url, repo)
    assert _patch(location, data[:1000], 0).status_code == 202
    parts = urlsplit(location)
    head = (
        f"PATCH {parts.path} HTTP/1.1\r\n"
        f"Host: {registry.host}\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    # One whole chunk, then half of the next one, then the client hangs up.
    body = b"7d0\r\n" + data[1000:3000] + b"\r\n" + b"7d0\r\n" + data[3000:4000]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-999"
    assert _patch(location, data[1000:], 1000).status_code == 202
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert _blob(registry, repo, sha256(data)).content == data


def test_monolithic_post_with_malformed_digest_is_digest_invalid(registry, repo):
    for digest in ("sha256:1234", "md5:" + "0" * 32, "nonsense"):
        r = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                          data=b"abc")
        assert_error(r, 400, "DIGEST_INVALID")


def test_malformed_content_range_is_rejected_and_the_session_kept(registry, repo):
    location = start_upload(registry.url, repo)
    assert _patch(location, b"hello", 0).status_code == 202
    for bad in ("abc", "5-", "9-5", "-3"):
        r = requests.patch(location, data=b"x", headers={"Content-Range": bad})
        assert r.status_code in (400, 416), (bad, r.status_code)
        assert r.json()["errors"]
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-4"
    r = requests.put(location, params={"digest": sha256(b"hello world")}, data=b" world")
    assert r.status_code == 201, r.text


def test_mount_without_from_refuses_a_blob_deleted_from_every_repository(registry, repo):
    data = os.urandom(64)
    digest = push_blob(registry.url, repo, data)
    assert requests.delete(f"{registry.url}/v2/{repo}/blobs/{digest}").status_code == 202
    r = requests.post(f"{registry.url}/v2/{repo}-other/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 202  # a plain upload session, no mount
    assert requests.head(f"{registry.url}/v2/{repo}-other/blobs/{digest}").status_code == 404
