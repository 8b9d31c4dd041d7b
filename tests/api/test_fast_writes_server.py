"""Through gunicorn (2 workers): the fast write route answers what Flask does.

A plain cross-repository mount and manifest PUT take the fast route
(web/fast_writes.py; its body read from gunicorn's socket by web/body.py); the same
request with one more query parameter (which Flask's routes ignore) goes through Flask.
Each pair writes to its own twin repository: status, headers (names, order, values;
not Date, and the repository's name read as the other's) and body must match, and so
must the access-log lines (but for the duration). Also: a manifest body shorter than
its Content-Length (the client hangs up) stores nothing and a keep-alive connection
carries several fast writes in a row. A blob pushed as clients do (POST, PATCH, PUT
?digest=: the POST and PUT on the fast route, the PATCH on Flask's) answers what the
same sequence through Flask does, each side on one keep-alive connection.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
import uuid

import pytest
import requests

from tests.helpers import DOCKER_MANIFEST, OCI_CONFIG, push_blob, send_and_hang_up, sha256


def _raw(url: str, method: str, path: str, headers: dict[str, str], body: bytes = b""
         ) -> tuple[int, list, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        conn.close()


def _log_line(path, request_id: str) -> list[str]:
    """The access-log line of ``request_id`` (written when the answer has gone: poll)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if line.endswith(" " + request_id) and " /v2/" in line:
                words = line.split(" ")
                start = next(i for i, w in enumerate(words) if w in ("PUT", "POST")) - 1
                words = words[start:]
                del words[-3]  # the duration
                return words[:-1]  # and the request id itself
        time.sleep(0.2)
    raise AssertionError(f"no access-log line for {request_id}")


def _same(fast: tuple, flask: tuple, ids: list[str], names: tuple[str, str]) -> None:
    def plain(headers: list, request_id: str) -> list:
        return [(k.lower(), v.replace(names[1], names[0])) for k, v in headers
                if k.lower() != "date" and not (k.lower() == "x-request-id" and v == request_id)]

    assert fast[0] == flask[0]
    assert plain(fast[1], ids[0]) == plain(flask[1], ids[1])
    assert fast[2] == flask[2].replace(names[1].encode(), names[0].encode())


@pytest.mark.single_node
def test_server_writes_fast_and_flask_alike(registry, repo) -> None:
    config = json.dumps({"os": "linux", "n": uuid.uuid4().hex}).encode()
    digest = push_blob(registry.url, f"{repo}/src", config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": [],
                           "config": {"mediaType": OCI_CONFIG, "digest": digest,
                                      "size": len(config)}}).encode()
    # Same-length twin names: the answers (and their lengths) then differ only by name.
    names = (f"{repo}/fast", f"{repo}/slow")
    ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    mounts = [_raw(registry.url, "POST",
                   f"/v2/{name}/blobs/uploads/?mount={digest}&from={repo}/src{extra}",
                   {"X-Request-ID": rid})
              for name, rid, extra in zip(names, ids, ("", "&through=flask"), strict=True)]
    assert mounts[0][0] == 201, mounts[0]
    _same(mounts[0], mounts[1], ids, names)
    assert _log_line(registry.log_path, ids[0]) == [
        w.replace(names[1], names[0]).replace("&through=flask", "")
        for w in _log_line(registry.log_path, ids[1])]
    for ref in ("latest", "latest", sha256(manifest)):
        ids = [uuid.uuid4().hex, uuid.uuid4().hex]
        puts = [_raw(registry.url, "PUT", f"/v2/{name}/manifests/{ref}{extra}",
                     {"X-Request-ID": rid, "Content-Type": DOCKER_MANIFEST}, manifest)
                for name, rid, extra in zip(names, ids, ("", "?through=flask"), strict=True)]
        assert puts[0][0] == 201, puts[0]
        _same(puts[0], puts[1], ids, names)
        assert _log_line(registry.log_path, ids[0]) == [
            w.replace(names[1], names[0]) for w in _log_line(registry.log_path, ids[1])]
    # An error envelope (a blob the repository does not hold), both ways.
    missing = manifest.replace(digest.encode(), b"sha256:" + b"8" * 64)
    ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    errors = [_raw(registry.url, "PUT", f"/v2/{name}/manifests/v2{extra}",
                   {"X-Request-ID": rid, "Content-Type": DOCKER_MANIFEST}, missing)
              for name, rid, extra in zip(names, ids, ("", "?through=flask"), strict=True)]
    assert errors[0][0] == 400 and b"MANIFEST_BLOB_UNKNOWN" in errors[0][2]
    _same(errors[0], errors[1], ids, names)


@pytest.mark.single_node
def test_server_fast_writes_keep_alive_and_hang_up(registry, repo) -> None:
    config = json.dumps({"os": "linux", "n": uuid.uuid4().hex}).encode()
    digest = push_blob(registry.url, f"{repo}/src", config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": [],
                           "config": {"mediaType": OCI_CONFIG, "digest": digest,
                                      "size": len(config)}}).encode()
    with requests.Session() as session:  # one connection: bodies read to their end
        for i in range(5):
            r = session.post(f"{registry.url}/v2/{repo}/r{i}/blobs/uploads/",
                             params={"mount": digest, "from": f"{repo}/src"})
            assert r.status_code == 201, r.text
            r = session.put(f"{registry.url}/v2/{repo}/r{i}/manifests/v1", data=manifest,
                            headers={"Content-Type": DOCKER_MANIFEST})
            assert r.status_code == 201, r.text
            r = session.get(f"{registry.url}/v2/{repo}/r{i}/manifests/v1",
                            headers={"Accept": DOCKER_MANIFEST})
            assert r.status_code == 200 and r.content == manifest
    # The body stops half-way: nothing stored under the tag.
    parts = urllib.parse.urlsplit(registry.url)
    head = (f"PUT /v2/{repo}/cut/manifests/v1 HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: {DOCKER_MANIFEST}\r\nContent-Length: {len(manifest)}\r\n\r\n")
    send_and_hang_up(parts.hostname, parts.port, head.encode() + manifest[:40])
    r = requests.get(f"{registry.url}/v2/{repo}/cut/manifests/v1",
                     headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 404, r.text


def _one_connection(url: str) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)


def _on(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str],
        body: bytes = b"") -> tuple[int, list, bytes]:
    """A request on ``conn``, which must stay the same connection (keep-alive)."""
    before = conn.sock
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    answer = r.status, r.getheaders(), r.read()
    assert before is None or conn.sock is before, f"{method} {path}: connection re-opened"
    assert r.getheader("Connection", "").lower() != "close", answer
    return answer


@pytest.mark.single_node
def test_server_upload_sequence_fast_and_flask_alike(registry, repo) -> None:
    names = (f"{repo}/fast", f"{repo}/slow")
    extras = ("", "through=flask")  # a query parameter Flask's routes ignore
    conns = [_one_connection(registry.url) for _ in names]
    try:
        for size in (300_000, 4096, 0):
            data = os.urandom(size)
            digest = sha256(data)
            ids = [uuid.uuid4().hex, uuid.uuid4().hex]
            answers: list[list[tuple]] = [[], []]
            sessions = []
            for i, (conn, name, extra) in enumerate(zip(conns, names, extras, strict=True)):
                post = _on(conn, "POST", f"/v2/{name}/blobs/uploads/"
                                         + (f"?{extra}" if extra else ""),
                           {"X-Request-ID": ids[i], "Content-Length": "0"})
                assert post[0] == 202, post
                location = dict(post[1])["Location"]
                sessions.append(dict(post[1])["Docker-Upload-UUID"])
                patch = _on(conn, "PATCH", location,
                            {"Content-Type": "application/octet-stream"}, data)
                assert patch[0] == 202, patch
                put = _on(conn, "PUT", f"{location}?digest={digest}"
                                       + (f"&{extra}" if extra else ""),
                          {"X-Request-ID": ids[i], "Content-Length": "0"})
                assert put[0] == 201, put
                answers[i] = [post, put]
            for fast, flask in zip(answers[0], answers[1], strict=True):
                masked = tuple(_masked(a, sessions[i]) for i, a in enumerate((fast, flask)))
                _same(masked[0], masked[1], ids, names)
            # The access-log lines: the POST's and the PUT's, alike but for the
            # session, the twin's name and Flask's extra parameter.
            ours, theirs = (_log_lines(registry.log_path, rid) for rid in ids)
            assert len(ours) == len(theirs) == 2
            assert [[w.replace(sessions[0], "{u}") for w in line] for line in ours] == [
                [w.replace(names[1], names[0]).replace(sessions[1], "{u}")
                 .replace(f"?{extras[1]}", "").replace(f"&{extras[1]}", "")
                 for w in line] for line in theirs]
            # The blob is there, in either twin, with its bytes and digest.
            for conn, name in zip(conns, names, strict=True):
                got = _on(conn, "GET", f"/v2/{name}/blobs/{digest}", {})
                assert got[0] == 200 and got[2] == data
                assert dict(got[1])["Docker-Content-Digest"] == digest
    finally:
        for conn in conns:
            conn.close()


def _masked(answer: tuple, session: str) -> tuple:
    status, headers, body = answer
    return status, [(k, v.replace(session, "{u}")) for k, v in headers], body


def _log_lines(path, request_id: str) -> list[list[str]]:
    """Both access-log lines (POST and PUT) of ``request_id``, without the duration."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = []
        for line in path.read_text(errors="replace").splitlines():
            if line.endswith(" " + request_id) and " /v2/" in line:
                words = line.split(" ")
                start = next(i for i, w in enumerate(words) if w in ("PUT", "POST")) - 1
                words = words[start:]
                del words[-3]
                found.append(words[:-1])
        if len(found) >= 2:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no access-log lines for {request_id}")
