"""Blob uploads that fail half-way (truncated bodies, bad input) or outlive a restart."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import requests

from tests.helpers import (
    absolute,
    assert_error,
    get_blob,
    patch_chunk,
    push_blob,
    send_and_hang_up,
    sha256,
    start_upload,
)


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
    send_and_hang_up(host, port, head + body)


def test_truncated_chunk_leaves_the_session_at_its_previous_offset(registry, repo):
    data = os.urandom(4000)
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, data[:1000], 0).status_code == 202
    parts = urlsplit(location)
    _raw_truncated_patch(parts.hostname, parts.port, parts.path, 100_000, data[1000:1500])
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-999"
    # The upload continues from there and the digest comes out right.
    assert patch_chunk(location, data[1000:], 1000).status_code == 202
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert get_blob(registry, repo, sha256(data)).content == data


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
    send_and_hang_up(host, int(port), head + data[:500])
    assert get_blob(registry, repo, digest).status_code == 404
    # The same blob pushed properly afterwards is fine.
    assert push_blob(registry.url, repo, data) == digest


def test_upload_survives_a_registry_restart(fresh_registry):
    repo = "restart/blob"
    data = os.urandom(300_000)
    location = start_upload(fresh_registry.url, repo)
    r = patch_chunk(location, data[:100_000], 0)
    assert r.status_code == 202
    location = absolute(fresh_registry.url, r.headers["Location"])
    fresh_registry.stop()
    fresh_registry.start()
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-99999"
    r = patch_chunk(location, data[100_000:200_000], 100_000)
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
    assert patch_chunk(location, data[:1000], 0).status_code == 202
    parts = urlsplit(location)
    head = (
        f"PATCH {parts.path} HTTP/1.1\r\n"
        f"Host: {registry.host}\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    # One whole chunk, then half of the next one, then the client hangs up.
    body = b"7d0\r\n" + data[1000:3000] + b"\r\n" + b"7d0\r\n" + data[3000:4000]
    send_and_hang_up(parts.hostname, parts.port, head + body)
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-999"
    assert patch_chunk(location, data[1000:], 1000).status_code == 202
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert get_blob(registry, repo, sha256(data)).content == data


def test_monolithic_post_with_malformed_digest_is_digest_invalid(registry, repo):
    for digest in ("sha256:1234", "md5:" + "0" * 32, "nonsense"):
        r = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                          data=b"abc")
        assert_error(r, 400, "DIGEST_INVALID")


def test_malformed_content_range_is_rejected_and_the_session_kept(registry, repo):
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, b"hello", 0).status_code == 202
    for bad in ("abc", "5-", "9-5", "-3"):
        r = requests.patch(location, data=b"x", headers={"Content-Range": bad})
        assert r.status_code in (400, 416), (bad, r.status_code)
        assert r.json()["errors"]
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-4"
    r = requests.put(location, params={"digest": sha256(b"hello world")}, data=b" world")
    assert r.status_code == 201, r.text





def _corrupt_hash_state(db_path, upload_id: str, **changes: int) -> None:
    """Rewrite an upload's saved SHA-256 state with fields changed, and a checksum that
    matches again when the format has one: a row rewritten on purpose."""
    import sqlite3
    import struct

    from ociregistry.core import hashstate

    layout = struct.Struct("@8I2I16I2I")
    positions = {"num": -2, "md_len": -1}
    with sqlite3.connect(db_path) as db:
        (state,) = db.execute("SELECT hash_state FROM uploads WHERE id = ?",
                              (upload_id,)).fetchone()
        head = state[: state.index(b":") + 1]
        fields = list(layout.unpack(state[len(head): len(head) + layout.size]))
        for name, value in changes.items():
            fields[positions[name]] = value
        ctx = layout.pack(*fields)
        trailer = hashstate._checksum(ctx) if hasattr(hashstate, "_checksum") else b""
        db.execute("UPDATE uploads SET hash_state = ? WHERE id = ?",
                   (head + ctx + trailer, upload_id))


def test_a_corrupt_saved_hash_state_is_rehashed_not_trusted(fresh_registry):
    """A hash state whose fields would send OpenSSL outside its buffers: the worker that
    resumes the upload re-hashes the stored bytes instead, and the digest comes out right."""
    repo = "corrupt/state"
    data = os.urandom(300_000)
    uploads = []
    for changes in ({"num": 1 << 30}, {"md_len": 1 << 20}):
        r = patch_chunk(start_upload(fresh_registry.url, repo), data[:100_003], 0)
        assert r.status_code == 202
        uploads.append((changes, absolute(fresh_registry.url, r.headers["Location"])))
    fresh_registry.stop()  # the next requests resume from the saved state, not a cache
    for changes, location in uploads:
        upload_id = urlsplit(location).path.rsplit("/", 1)[1]
        _corrupt_hash_state(fresh_registry.data_dir / "registry.db", upload_id, **changes)
    log_start = fresh_registry.log_path.stat().st_size
    fresh_registry.start()
    for _, location in uploads:
        r = patch_chunk(location, data[100_003:200_000], 100_003)
        assert r.status_code == 202, r.text
        location = absolute(fresh_registry.url, r.headers["Location"])
        r = requests.put(location, params={"digest": sha256(data)}, data=data[200_000:])
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert get_blob(fresh_registry, repo, sha256(data)).content == data
    with open(fresh_registry.log_path, "rb") as log:
        log.seek(log_start)
        since = log.read().decode(errors="replace")
    assert "SIGSEGV" not in since and "was sent" not in since and "exited" not in since
