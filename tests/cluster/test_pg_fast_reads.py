"""The fast read route on PostgreSQL: it answers (the driver hands the payload as
bytes) and answers what Flask does (tests/api/fast_reads_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.fast_reads_support import Harness


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_fast_reads_on_postgresql(tmp_path: Path, pg_url: str, method: str) -> None:
    h = Harness(tmp_path, None, database={"url": pg_url})
    try:
        _reads(h, method)
    finally:  # write the buffered pulls now, while the database is still there
        on_pull = h.runtime.metadata.events.on_pull
        if on_pull is not None:
            on_pull.__self__.stop()
        if h.runtime.registry.pulls is not None:
            h.runtime.registry.pulls.close()
        h.runtime.metadata.dispose()


def _reads(h: Harness, method: str) -> None:
    assert h.runtime.metadata.dialect == "postgresql"
    body, digest = h.image("pg/app", "v1")
    for ref in ("v1", digest):
        answer = h.both(method, f"/v2/pg/app/manifests/{ref}", fast=True)
        assert answer["body"] == (body if method == "GET" else b"")
    h.both(method, "/v2/pg/app/manifests/absent", fast=False, status=404)
    config = h.blob("pg/app", b"a blob")["digest"]
    h.both(method, f"/v2/pg/app/blobs/{config}", fast=True)
