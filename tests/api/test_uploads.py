"""Blob uploads: sessions, monolithic and chunked pushes, mounts."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit

import requests

from tests.helpers import (
    absolute,
    assert_error,
    get_blob,
    patch_chunk,
    push_blob,
    sha256,
    sha512,
    start_upload,
)


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
    assert patch_chunk(location, b"0123456789", 0).status_code == 202
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
    assert get_blob(registry, repo, claimed).status_code == 404
    assert get_blob(registry, repo, sha256(data)).status_code == 404


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
    assert get_blob(registry, repo, digest).content == data
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
        r = patch_chunk(location, chunk, offset)
        assert r.status_code == 202, r.text
        offset += size
        assert r.headers["Range"] == f"0-{offset - 1}"
        # Clients follow the Location of the previous response.
        location = absolute(registry.url, r.headers["Location"])
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert get_blob(registry, repo, sha256(data)).content == data


def test_put_may_carry_the_last_chunk(registry, repo):
    data = os.urandom(2000)
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, data[:1500], 0).status_code == 202
    r = requests.put(
        location,
        params={"digest": sha256(data)},
        data=data[1500:],
        headers={"Content-Range": f"1500-{len(data) - 1}",
                 "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert get_blob(registry, repo, sha256(data)).content == data


def test_put_last_chunk_without_content_range(registry, repo):
    data = os.urandom(2000)
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, data[:999], 0).status_code == 202
    r = requests.put(location, params={"digest": sha256(data)}, data=data[999:])
    assert r.status_code == 201, r.text
    assert get_blob(registry, repo, sha256(data)).content == data


def test_out_of_order_patch_is_416_with_location_and_range(registry, repo):
    data = os.urandom(300)
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, data[:100], 0).status_code == 202
    # Skips bytes 100..149.
    r = patch_chunk(location, data[150:], 150)
    assert r.status_code == 416
    assert r.headers["Range"] == "0-99"
    assert absolute(registry.url, r.headers["Location"]) == location
    assert "errors" in r.json()
    # Re-sending an already received chunk is out of order too.
    r = patch_chunk(location, data[:100], 0)
    assert r.status_code == 416
    assert r.headers["Range"] == "0-99"
    # The client recovers from the status endpoint and finishes the upload.
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-99"
    resume = int(status.headers["Range"].split("-")[1]) + 1
    assert patch_chunk(location, data[resume:], resume).status_code == 202
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert get_blob(registry, repo, sha256(data)).content == data


def test_out_of_order_final_chunk_on_put_is_416(registry, repo):
    data = os.urandom(200)
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, data[:100], 0).status_code == 202
    r = requests.put(
        location,
        params={"digest": sha256(data)},
        data=data[120:],
        headers={"Content-Range": f"120-{len(data) - 1}"},
    )
    assert r.status_code == 416
    assert r.headers["Range"] == "0-99"
    assert requests.get(location).headers["Range"] == "0-99"
    assert get_blob(registry, repo, sha256(data)).status_code == 404


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
    assert get_blob(registry, repo, sha256(data + b"tail")).content == data + b"tail"


def test_digest_mismatch_on_put_leaves_no_blob(registry, repo):
    data = os.urandom(1000)
    wrong = sha256(b"not the data")
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, data, 0).status_code == 202
    r = requests.put(location, params={"digest": wrong})
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(get_blob(registry, repo, wrong), 404, "BLOB_UNKNOWN")
    assert_error(get_blob(registry, repo, sha256(data)), 404, "BLOB_UNKNOWN")
    # A later, correct push of the same bytes works.
    assert push_blob(registry.url, repo, data) == sha256(data)


def test_malformed_digest_on_put_is_digest_invalid(registry, repo):
    location = start_upload(registry.url, repo)
    r = requests.put(location, params={"digest": "sha256:nothex"}, data=b"abc")
    assert_error(r, 400, "DIGEST_INVALID")


# -- cancel and unknown sessions -------------------------------------------------
def test_delete_cancels_the_session(registry, repo):
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, b"partial", 0).status_code == 202
    r = requests.delete(location)
    assert r.status_code == 204
    assert_error(requests.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch_chunk(location, b"more", 7), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.put(location, params={"digest": sha256(b"partial")}), 404,
                 "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_unknown_session_is_404_blob_upload_unknown(registry, repo):
    push_blob(registry.url, repo, b"x")
    location = f"{registry.url}/v2/{repo}/blobs/uploads/{uuid.uuid4()}"
    assert_error(requests.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch_chunk(location, b"abc", 0), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.put(location, params={"digest": sha256(b"abc")}, data=b"abc"), 404,
                 "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    # An id that could never have been issued is unknown too, not a server error.
    garbage = f"{registry.url}/v2/{repo}/blobs/uploads/not..a..session"
    assert_error(requests.get(garbage), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch_chunk(garbage, b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_session_of_one_repository_cannot_be_used_from_another(registry, repo):
    other = repo + "-other"
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, b"abc", 0).status_code == 202
    upload_id = urlsplit(location).path.rsplit("/", 1)[1]
    foreign = f"{registry.url}/v2/{other}/blobs/uploads/{upload_id}"
    assert_error(requests.get(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch_chunk(foreign, b"def", 3), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.put(foreign, params={"digest": sha256(b"abc")}), 404,
                 "BLOB_UPLOAD_UNKNOWN")
    assert_error(requests.delete(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    # The session is untouched in its own repository.
    assert requests.get(location).headers["Range"] == "0-2"
    assert requests.put(location, params={"digest": sha256(b"abc")}).status_code == 201
    assert get_blob(registry, other, sha256(b"abc")).status_code == 404


# -- sha512 ---------------------------------------------------------------------
def test_sha512_session_via_digest_algorithm(registry, repo):
    data = os.urandom(5000)
    digest = sha512(data)
    location = start_upload(registry.url, repo, **{"digest-algorithm": "sha512"})
    r = patch_chunk(location, data[:2500], 0)
    assert r.status_code == 202
    r = patch_chunk(absolute(registry.url, r.headers["Location"]), data[2500:], 2500)
    assert r.status_code == 202
    r = requests.put(absolute(registry.url, r.headers["Location"]), params={"digest": digest})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    blob = get_blob(registry, repo, digest)
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
    assert get_blob(registry, repo, digest).content == data
    # sha256 and sha512 name different blobs; the sha256 one was never pushed.
    assert get_blob(registry, repo, sha256(data)).status_code == 404


def test_sha512_digest_on_a_default_session(registry, repo):
    data = os.urandom(3000)
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, data, 0).status_code == 202
    r = requests.put(location, params={"digest": sha512(data)})
    assert r.status_code == 201, r.text
    assert get_blob(registry, repo, sha512(data)).content == data


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
    assert get_blob(registry, target, digest).content == data


def test_mount_without_from_answers_201_when_the_blob_exists(registry, repo):
    data = os.urandom(700)
    digest = push_blob(registry.url, repo, data)
    target = repo + "-nofrom"
    r = requests.post(f"{registry.url}/v2/{target}/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert get_blob(registry, target, digest).content == data


def test_mount_of_unknown_blob_opens_a_session(registry, repo):
    data = os.urandom(700)
    digest = sha256(data)
    push_blob(registry.url, repo, b"the source repository exists")
    target = repo + "-target"
    r = requests.post(f"{registry.url}/v2/{target}/blobs/uploads/",
                      params={"mount": digest, "from": repo})
    assert r.status_code == 202
    location = absolute(registry.url, r.headers["Location"])
    assert get_blob(registry, target, digest).status_code == 404
    # The session is usable for a normal upload.
    r = requests.put(location, params={"digest": digest}, data=data)
    assert r.status_code == 201, r.text
    assert get_blob(registry, target, digest).content == data


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
        assert get_blob(registry, target, digest).content == data


def test_mount_without_from_refuses_a_blob_deleted_from_every_repository(registry, repo):
    data = os.urandom(64)
    digest = push_blob(registry.url, repo, data)
    assert requests.delete(f"{registry.url}/v2/{repo}/blobs/{digest}").status_code == 202
    r = requests.post(f"{registry.url}/v2/{repo}-other/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 202  # a plain upload session, no mount
    assert requests.head(f"{registry.url}/v2/{repo}-other/blobs/{digest}").status_code == 404
