"""The fast read route on PostgreSQL: it answers (the driver hands the payload as
bytes) and answers what Flask does (tests/api/fast_reads_support.py); so do ``/v2/``
and tags lists (web/fast_listings.py), which see another instance's tags at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.fast_reads_support import Harness
from tests.helpers import OCI_MANIFEST


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_fast_reads_on_postgresql(tmp_path: Path, pg_url: str, method: str) -> None:
    h = Harness(tmp_path, None, database={"url": pg_url})
    try:
        _reads(h, method)
    finally:
        _close(h)


def _reads(h: Harness, method: str) -> None:
    assert h.runtime.metadata.dialect == "postgresql"
    body, digest = h.image("pg/app", "v1")
    for ref in ("v1", digest):
        answer = h.both(method, f"/v2/pg/app/manifests/{ref}", fast=True)
        assert answer["body"] == (body if method == "GET" else b"")
    h.both(method, "/v2/pg/app/manifests/absent", fast=False, status=404)
    config = h.blob("pg/app", b"a blob")["digest"]
    h.both(method, f"/v2/pg/app/blobs/{config}", fast=True)


def _close(h: Harness) -> None:
    """Write the buffered pulls now, while the database is still there."""
    on_pull = h.runtime.metadata.events.on_pull
    if on_pull is not None:
        on_pull.__self__.stop()
    if h.runtime.registry.pulls is not None:
        h.runtime.registry.pulls.close()
    h.runtime.metadata.dispose()


def test_fast_listings_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """``/v2/`` and tags lists (web/fast_listings.py) on PostgreSQL: Flask's answers; a tag
    written by another instance (its own process cache, the same database) is in this
    one's next list, whole or paged."""
    h = Harness(tmp_path / "one", None, database={"url": pg_url})
    other = Harness(tmp_path / "two", None, database={"url": pg_url})
    try:
        assert h.runtime.metadata.dialect == "postgresql"
        for method in ("GET", "HEAD"):
            h.both(method, "/v2/", fast=True)
        body, _ = h.image("pg/list", "b")
        for tag in ("a", "c"):
            h.manifest("pg/list", tag, body, OCI_MANIFEST)
        path = "/v2/pg/list/tags/list"
        assert json.loads(h.both("GET", path, fast=True)["body"])["tags"] == ["a", "b", "c"]
        answer = h.both("GET", path + "?n=2", fast=True)
        assert ("Link", '</v2/pg/list/tags/list?n=2&last=b>; rel="next"') in answer["headers"]
        h.both("GET", path + "?n=2&last=b", fast=True)
        h.both("GET", path + "?n=0", fast=True)
        h.both("GET", "/v2/pg/unknown/tags/list", fast=False, status=404)
        h.both("GET", path + "?n=x", fast=False, status=400)
        # The other instance adds a tag, then deletes one: seen here at once.
        other.manifest("pg/list", "d", body, OCI_MANIFEST)
        assert json.loads(h.both("GET", path, fast=True)["body"])["tags"] == [
            "a", "b", "c", "d"]
        assert json.loads(h.both("GET", path + "?n=2&last=b", fast=True)["body"])[
            "tags"] == ["c", "d"]
        assert other.client.delete("/v2/pg/list/manifests/a").status_code == 202
        assert json.loads(h.both("GET", path + "?n=2", fast=True)["body"])["tags"] == [
            "b", "c"]
        # An empty repository (its last tag gone) still lists, empty.
        h.blob("pg/empty", b"no manifest here")
        assert h.both("GET", "/v2/pg/empty/tags/list", fast=True)["body"] == \
            b'{"name": "pg/empty", "tags": []}'
    finally:
        _close(h)
        _close(other)
