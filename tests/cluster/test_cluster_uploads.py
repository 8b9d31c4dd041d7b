"""Chunked uploads whose requests land on different instances.

The session's progress (bytes in the store, the running hash) must travel with
it: each PATCH is sent straight to another instance's own address, the upload
is finished on yet another, and the blob comes out with the right digest.
Chunks are smaller and bigger than S3's 5 MiB part minimum and than the
driver's 8 MiB part size, so the driver's buffering of partial parts between
requests is what is being tested.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from urllib.parse import urlsplit

import requests

from tests.helpers import absolute, error_codes, send_and_hang_up, sha256

MiB = 1 << 20
TIMEOUT = 300


def _path(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def on(instance_url: str, location: str) -> str:
    """The same session URL, on another instance (Location headers are relative)."""
    return instance_url + _path(location)


def patch(url: str, data: bytes, start: int, **headers: str) -> requests.Response:
    return requests.patch(url, data=data, timeout=TIMEOUT, headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{start}-{start + len(data) - 1}", **headers})


def truncated_patch(url: str, start: int, declared: int, body: bytes) -> None:
    """A PATCH announcing ``declared`` bytes that hangs up after sending ``body``."""
    parts = urlsplit(url)
    head = (
        f"PATCH {_path(url)} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {declared}\r\nContent-Range: {start}-{start + declared - 1}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    send_and_hang_up(parts.hostname, parts.port, head + body, TIMEOUT)


def status_range(url: str) -> str:
    r = requests.get(url, timeout=TIMEOUT)
    assert r.status_code == 204, (r.status_code, r.text)
    return r.headers["Range"]


def blob_status(cluster, repo: str, digest: str) -> set[int]:
    """HEAD of the blob on every running instance and through nginx."""
    urls = [inst.url for i, inst in enumerate(cluster.instances) if cluster.running(i)]
    urls.append(cluster.url)
    return {requests.head(f"{u}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT).status_code
            for u in urls}


def leftovers(cluster, upload_id: str) -> tuple[list[str], list[str]]:
    """Objects and unfinished multipart uploads the session left in the bucket."""
    prefix = f"{cluster.prefix}uploads/{upload_id}"
    client = cluster.s3.client()
    open_parts = client.list_multipart_uploads(Bucket=cluster.bucket, Prefix=prefix)
    return (cluster.s3.keys(cluster.bucket, prefix),
            [u["Key"] for u in open_parts.get("Uploads", [])])


def test_chunks_on_three_instances_make_one_blob(cluster):
    first, second, third = (inst.url for inst in cluster.instances)
    repo = f"chunks/{uuid.uuid4().hex[:8]}"
    data = os.urandom(18 * MiB)
    digest = sha256(data)
    r = requests.post(f"{first}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
    assert r.status_code == 202, r.text
    location = absolute(first, r.headers["Location"])
    upload_id = r.headers["Docker-Upload-UUID"]

    # 1 MiB (under S3's part minimum), then 6 MiB (over it, under a part): no part yet.
    r = patch(on(second, location), data[:MiB], 0)
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{MiB - 1}"
    r = patch(on(third, r.headers["Location"]), data[MiB:7 * MiB], MiB)
    assert r.status_code == 202, r.text
    for url in (first, second, third, cluster.url):
        assert status_range(on(url, location)) == f"0-{7 * MiB - 1}"

    # Out of order (a gap, then a chunk already received): refused, nothing lost.
    r = patch(on(first, location), data[8 * MiB:9 * MiB], 8 * MiB)
    assert r.status_code == 416
    assert r.headers["Range"] == f"0-{7 * MiB - 1}"
    r = patch(on(second, location), data[:MiB], 0)
    assert r.status_code == 416
    assert r.headers["Range"] == f"0-{7 * MiB - 1}"
    # A chunk cut off half-way (after it filled a whole part) is rolled back.
    truncated_patch(on(third, location), 7 * MiB, 9 * MiB, data[7 * MiB:15 * MiB + 12345])
    for url in (first, second, third):
        assert status_range(on(url, location)) == f"0-{7 * MiB - 1}"

    # 9 MiB crosses the part size; the last 2 MiB come with the PUT elsewhere.
    assert blob_status(cluster, repo, digest) == {404}
    r = patch(on(first, location), data[7 * MiB:16 * MiB], 7 * MiB)
    assert r.status_code == 202, r.text
    assert blob_status(cluster, repo, digest) == {404}  # nothing visible before the PUT
    r = requests.put(on(third, r.headers["Location"]), params={"digest": digest},
                     data=data[16 * MiB:], timeout=TIMEOUT,
                     headers={"Content-Type": "application/octet-stream",
                              "Content-Range": f"{16 * MiB}-{len(data) - 1}"})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest

    got = requests.get(f"{cluster.url}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT)
    assert got.status_code == 200
    assert sha256(got.content) == digest
    for inst in cluster.instances:
        head = requests.head(f"{inst.url}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT)
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(data))
        gone = requests.get(on(inst.url, location), timeout=TIMEOUT)
        assert gone.status_code == 404
        assert error_codes(gone) == ["BLOB_UPLOAD_UNKNOWN"]
    assert leftovers(cluster, upload_id) == ([], [])


def test_chunks_through_nginx_reach_every_instance(cluster):
    repo = f"chunks/{uuid.uuid4().hex[:8]}"
    sizes = [3 * MiB, 5 * MiB, 64 * 1024, 9 * MiB, 1]
    data = os.urandom(sum(sizes))
    rid = uuid.uuid4().hex
    r = requests.post(f"{cluster.url}/v2/{repo}/blobs/uploads/", headers={"X-Request-ID": rid})
    assert r.status_code == 202, r.text
    location = absolute(cluster.url, r.headers["Location"])
    offset = 0
    for size in sizes:
        r = patch(location, data[offset:offset + size], offset, **{"X-Request-ID": rid})
        assert r.status_code == 202, r.text
        offset += size
        location = absolute(cluster.url, r.headers["Location"])
        assert r.headers["Range"] == f"0-{offset - 1}"
    r = requests.put(location, params={"digest": sha256(data)}, headers={"X-Request-ID": rid},
                     timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    # Round robin, no affinity: the session's requests went to all three instances.
    used = cluster.nginx.upstreams_of(rid, count=len(sizes) + 2)
    assert len(used) == len(sizes) + 2
    assert set(used) == {inst.host for inst in cluster.instances}
    got = requests.get(f"{cluster.url}/v2/{repo}/blobs/{sha256(data)}", timeout=TIMEOUT)
    assert sha256(got.content) == sha256(data)


def test_two_instances_racing_for_one_offset_never_interleave(cluster):
    """Two PATCHes of different bytes for the same range, at once, on two instances:
    one is taken, the other is refused, and the blob is exactly the winner's."""
    first, second, third = (inst.url for inst in cluster.instances)
    repo = f"chunks/{uuid.uuid4().hex[:8]}"
    head = os.urandom(2 * MiB)
    r = requests.post(f"{third}/v2/{repo}/blobs/uploads/")
    location = absolute(third, r.headers["Location"])
    assert patch(location, head, 0).status_code == 202
    candidates = [os.urandom(6 * MiB), os.urandom(6 * MiB)]
    answers: dict[int, requests.Response] = {}
    barrier = threading.Barrier(2)

    def send(i: int, url: str) -> None:
        barrier.wait()
        answers[i] = patch(on(url, location), candidates[i], len(head))

    threads = [threading.Thread(target=send, args=(i, url))
               for i, url in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(r.status_code for r in answers.values())
    # The loser either waited for the winner and found the offset moved (416) or
    # gave up waiting (409, with Retry-After).
    assert codes in ([202, 409], [202, 416]), [(r.status_code, r.text) for r in answers.values()]
    winner = next(i for i, r in answers.items() if r.status_code == 202)
    data = head + candidates[winner]
    assert status_range(on(third, location)) == f"0-{len(data) - 1}"
    r = requests.put(on(third, location), params={"digest": sha256(data)}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    got = requests.get(f"{cluster.url}/v2/{repo}/blobs/{sha256(data)}", timeout=TIMEOUT)
    assert got.content == data


def test_sha512_uploads_across_instances(cluster):
    """A sha512 session (its hash state travels between instances), and a sha256
    session finished with a sha512 digest (re-read from the store, parts and all)."""
    first, second, third = (inst.url for inst in cluster.instances)
    repo = f"chunks/{uuid.uuid4().hex[:8]}"
    for params in ({"digest-algorithm": "sha512"}, {}):
        data = os.urandom(19 * MiB)
        digest = "sha512:" + hashlib.sha512(data).hexdigest()
        r = requests.post(f"{first}/v2/{repo}/blobs/uploads/", params=params)
        assert r.status_code == 202, r.text
        location = absolute(first, r.headers["Location"])
        assert patch(on(second, location), data[:6 * MiB], 0).status_code == 202
        assert patch(on(third, location), data[6 * MiB:15 * MiB], 6 * MiB).status_code == 202
        r = requests.put(on(first, location), params={"digest": digest}, data=data[15 * MiB:],
                         timeout=TIMEOUT)
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == digest
        got = requests.get(f"{cluster.url}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT)
        assert got.status_code == 200
        assert got.content == data
