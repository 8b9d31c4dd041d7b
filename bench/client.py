"""A lean registry client: one keep-alive HTTP/1.1 connection (http.client), request
bodies sent with sendfile straight from the page cache, response bodies read into
one reused 1 MiB buffer and dropped. It stays far from being the bottleneck: see
the client ceilings that bench/machine.py measures against a null server.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

MiB = 1 << 20
CHUNK = 8 * MiB
MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


class BenchError(RuntimeError):
    pass


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def expect(self, *codes: int) -> Reply:
        if self.status not in codes:
            raise BenchError(f"HTTP {self.status} (wanted {codes}): {self.body[:300]!r}")
        return self

    def location(self) -> str:
        parts = urlsplit(self.headers["Location"])
        return parts.path + ("?" + parts.query if parts.query else "")


def with_query(path: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return path + ("&" if "?" in path else "?") + query


class Client:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600,
                                               blocksize=MiB)
        self.buf = memoryview(bytearray(MiB))

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        if body is None and method in ("PUT", "POST", "PATCH"):
            body = b""
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())

    def send_file(self, method: str, path: str, f: BinaryIO, offset: int, count: int,
                  headers: dict[str, str] | None = None) -> Reply:
        """A request whose body is `count` bytes of `f` from `offset`, by sendfile."""
        conn = self.conn
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in {"Content-Type": "application/octet-stream", **(headers or {}),
                           "Content-Length": str(count)}.items():
            conn.putheader(key, value)
        conn.endheaders()
        assert conn.sock is not None
        conn.sock.sendfile(f, offset, count)
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())

    def fetch(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, int]:
        """GET, dropping the body; returns (status, bytes received)."""
        self.conn.request("GET", path, headers=headers or {})
        resp = self.conn.getresponse()
        total = 0
        while n := resp.readinto(self.buf):
            total += n
        return resp.status, total

    # -- registry operations -------------------------------------------------------

    def start_upload(self, repo: str) -> str:
        return self.request("POST", f"/v2/{repo}/blobs/uploads/").expect(202).location()

    def push_monolithic(self, repo: str, f: BinaryIO, size: int, digest: str) -> None:
        """POST, then one PUT carrying the whole blob."""
        location = self.start_upload(repo)
        self.send_file("PUT", with_query(location, digest=digest), f, 0, size).expect(201)

    def push_chunked(self, repo: str, f: BinaryIO, size: int, digest: str,
                     chunk: int = CHUNK) -> None:
        """POST, PATCHes of `chunk` bytes with Content-Range, then a PUT with no body."""
        location = self.start_upload(repo)
        for offset in range(0, size, chunk):
            count = min(chunk, size - offset)
            rng = f"{offset}-{offset + count - 1}"
            location = self.send_file("PATCH", location, f, offset, count,
                                      {"Content-Range": rng}).expect(202).location()
        self.request("PUT", with_query(location, digest=digest)).expect(201)

    def push_streamed(self, repo: str, f: BinaryIO, size: int, digest: str) -> None:
        """What docker push does per layer: HEAD, POST, one PATCH with it all, PUT."""
        if self.request("HEAD", f"/v2/{repo}/blobs/{digest}").status == 200:
            return
        location = self.start_upload(repo)
        location = self.send_file("PATCH", location, f, 0, size).expect(202).location()
        self.request("PUT", with_query(location, digest=digest)).expect(201)

    def push_bytes(self, repo: str, data: bytes, digest: str) -> None:
        location = self.start_upload(repo)
        self.request("PUT", with_query(location, digest=digest), data,
                     {"Content-Type": "application/octet-stream"}).expect(201)

    def mount(self, repo: str, digest: str, source: str, data: bytes) -> None:
        """Cross-repository mount; uploads the bytes when the registry won't mount."""
        reply = self.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}")
        if reply.expect(201, 202).status == 202:
            self.request("PUT", with_query(reply.location(), digest=digest), data,
                         {"Content-Type": "application/octet-stream"}).expect(201)

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> None:
        self.request("PUT", f"/v2/{repo}/manifests/{ref}", body,
                     {"Content-Type": media_type}).expect(201)

    def get_manifest(self, repo: str, ref: str) -> bytes:
        return self.request("GET", f"/v2/{repo}/manifests/{ref}", None,
                            {"Accept": MANIFEST_TYPES}).expect(200).body

    def pull_blob(self, repo: str, digest: str, size: int) -> None:
        status, got = self.fetch(f"/v2/{repo}/blobs/{digest}")
        if status != 200 or got != size:
            raise BenchError(f"blob GET {digest}: HTTP {status}, {got} of {size} bytes")
