"""Reads answer the latest write, whichever process or instance serves them.

``check_reads_follow_writes(urls, repo)``: each write (tag set, tag moved, tag
deleted, manifest deleted by digest, blob unlinked) goes through one URL and is
read back at once (the manifest; after a tag change the tags list too) through every
URL, several times each on fresh connections (a server's workers are all reached)
and on a kept-alive one (a worker that has served the old answer before). Used by
tests/api/test_read_consistency.py (two servers on one data directory) and
tests/cluster/test_cluster_read_consistency.py (three instances on PostgreSQL + S3).
"""

from __future__ import annotations

import json
import os

import requests

from tests.helpers import OCI_MANIFEST, make_image, push_blob

READS_PER_URL = 4  # fresh connections per URL per check: reaches both workers of a server


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


class Reader:
    def __init__(self, urls: list[str], repo: str) -> None:
        self.urls, self.repo = urls, repo
        self.kept = [_session() for _ in urls]  # one kept-alive connection per URL

    def _answers(self, method: str, path: str) -> list[tuple[int, str | None, bytes]]:
        out = []
        for url, kept in zip(self.urls, self.kept, strict=True):
            for s in [kept] + [_session() for _ in range(READS_PER_URL)]:
                r = s.request(method, f"{url}/v2/{self.repo}/{path}", timeout=60)
                out.append((r.status_code, r.headers.get("Docker-Content-Digest"), r.content))
        return out

    def manifest(self, ref: str, digest: str | None, body: bytes | None = None) -> None:
        """Every read of ``ref`` answers ``digest`` (None: 404), by HEAD and GET."""
        for method in ("HEAD", "GET"):
            for status, served, content in self._answers(method, f"manifests/{ref}"):
                if digest is None:
                    assert status == 404, (method, ref, status, served)
                else:
                    assert (status, served) == (200, digest), (method, ref, status, served)
                    if method == "GET" and body is not None:
                        assert content == body

    def tags(self, expected: list[str]) -> None:
        """Every tags list answers ``expected``: whole, and the page of one after base-b."""
        for status, _, content in self._answers("GET", "tags/list"):
            assert (status, json.loads(content)["tags"]) == (200, expected), content
        for status, _, content in self._answers("GET", "tags/list?n=1&last=base-b"):
            assert (status, json.loads(content)["tags"]) == (200, expected[2:3]), content

    def blob(self, digest: str, present: bool) -> None:
        for method in ("HEAD", "GET"):
            for status, _, _ in self._answers(method, f"blobs/{digest}"):
                assert status in ((200, 307) if present else (404,)), (method, status)


def _put(url: str, repo: str, ref: str, body: bytes) -> str:
    r = _session().put(f"{url}/v2/{repo}/manifests/{ref}", data=body,
                       headers={"Content-Type": OCI_MANIFEST}, timeout=60)
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def check_reads_follow_writes(urls: list[str], repo: str, rounds: int = 3) -> None:
    read = Reader(urls, repo)
    first = json.dumps(make_image(urls[0], repo, layers=1)).encode()
    second = json.dumps(make_image(urls[0], repo, layers=1)).encode()
    a = _put(urls[0], repo, "base-a", first)
    b = _put(urls[0], repo, "base-b", second)
    n = len(urls)
    for i in range(rounds):
        w = urls[i % n]
        # set, move back and forth, delete: read through every instance right after each
        assert _put(w, repo, "moving", first) == a
        read.manifest("moving", a, first)
        read.tags(["base-a", "base-b", "moving"])
        assert _put(urls[(i + 1) % n], repo, "moving", second) == b
        read.manifest("moving", b, second)
        assert _put(urls[(i + 2) % n], repo, "moving", first) == a
        read.manifest("moving", a, first)
        r = _session().delete(f"{w}/v2/{repo}/manifests/moving", timeout=60)
        assert r.status_code == 202, r.text
        read.manifest("moving", None)
        read.tags(["base-a", "base-b"])
    # by digest: served everywhere, then deleted through one and gone everywhere
    read.manifest(a, a, first)
    read.manifest(b, b, second)
    r = _session().delete(f"{urls[-1]}/v2/{repo}/manifests/{b}", timeout=60)
    assert r.status_code == 202, r.text
    read.manifest(b, None)
    read.manifest("base-b", None)
    read.tags(["base-a"])  # base-b went with its manifest (a kept tags page must not stay)
    assert _put(urls[0], repo, "again", second) == b  # pushed again: served again
    read.manifest(b, b, second)
    read.tags(["again", "base-a"])
    # a blob unlinked from the repository through one instance: 404 through all
    data = os.urandom(2048)
    digest = push_blob(urls[0], repo, data)
    read.blob(digest, present=True)
    r = _session().delete(f"{urls[-1]}/v2/{repo}/blobs/{digest}", timeout=60)
    assert r.status_code == 202, r.text
    read.blob(digest, present=False)
