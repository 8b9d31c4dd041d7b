"""The GC's byte-deletion order, as a scenario shared by the single-node test
(tests/api/test_gc_ordering.py: SQLite + files) and the cluster test
(tests/cluster/test_cluster_gc_ordering.py: PostgreSQL + S3).

The scenario makes the GC's transaction fail at COMMIT with a real database
error: a table whose foreign key on ``blobs`` is checked only at commit
(DEFERRABLE INITIALLY DEFERRED, on both SQLite and PostgreSQL) holds the
digests of blobs the sweep is about to delete. The DELETE runs, the COMMIT
fails, the rows come back. Whatever the GC did to the bytes before that must
not leave a blob that HEAD reports and GET cannot serve.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import requests
import sqlalchemy as sa

from tests.helpers import (
    OCI_LAYER,
    OCI_MANIFEST,
    push_blob,
    push_empty_config,
    put_manifest,
    sha256,
)

TRAP_TABLE = "gc_commit_trap"


def set_trap(database_url: str, digests: list[str]) -> None:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE TABLE {TRAP_TABLE} (digest VARCHAR(200) REFERENCES blobs (digest)"
                " DEFERRABLE INITIALLY DEFERRED)"
            )
            for digest in digests:
                conn.execute(sa.text(f"INSERT INTO {TRAP_TABLE} VALUES (:d)"), {"d": digest})
    finally:
        engine.dispose()


def remove_trap(database_url: str) -> None:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {TRAP_TABLE}")
    finally:
        engine.dispose()


def blob_is_whole_or_unknown(url: str, repo: str, digest: str, size: int) -> str | None:
    """None when HEAD's answer holds (404, or 200 and GET serves every byte); else why not."""
    head = requests.head(f"{url}/v2/{repo}/blobs/{digest}", timeout=60)
    if head.status_code == 404:
        return None
    if head.status_code != 200:
        return f"HEAD {digest}: {head.status_code}"
    try:
        r = requests.get(f"{url}/v2/{repo}/blobs/{digest}", timeout=60)
    except requests.RequestException as exc:  # a body cut short
        return f"GET {digest}: {exc}"
    if r.status_code != 200:
        return f"HEAD {digest} says 200, GET says {r.status_code}"
    if len(r.content) != size or sha256(r.content) != digest:
        return f"GET {digest}: {len(r.content)} of {size} bytes, or the wrong ones"
    return None


def rows_left(database_url: str, digests: list[str]) -> int:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM blobs WHERE digest IN :d").bindparams(
                sa.bindparam("d", expanding=True))
            return conn.execute(query, {"d": digests}).scalar()
    finally:
        engine.dispose()


def manifest_on(url: str, repo: str, digest: str, size: int) -> int:
    """Push a manifest whose one layer is ``digest``; its status."""
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": push_empty_config(url, repo),
        "layers": [{"mediaType": OCI_LAYER, "digest": digest, "size": size}],
    }
    return put_manifest(url, repo, digest.replace(":", "-"), manifest, timeout=60).status_code


def commit_failure_scenario(
    url: str, database_url: str, run_gc: Callable[[], Any], repo: str = "gc/ordering"
) -> Any:
    """Push unreferenced blobs, make the GC's commit fail, then check that every
    blob the registry still vouches for (HEAD 200, or a manifest on it accepted)
    is served in full. Lift the trap: the GC frees them. Returns the failed run."""
    blobs = {push_blob(url, repo, data): len(data) for data in
             (os.urandom(3000), os.urandom(5000), os.urandom(7000))}
    set_trap(database_url, sorted(blobs))
    failed = run_gc()
    assert rows_left(database_url, sorted(blobs)), "the GC's commit did not fail"
    problems = [p for d, n in blobs.items() if (p := blob_is_whole_or_unknown(url, repo, d, n))]
    assert not problems, problems
    for digest, size in blobs.items():
        if manifest_on(url, repo, digest, size) == 201:
            # a manifest was accepted onto the blob: it must be there, whole
            problem = blob_is_whole_or_unknown(url, repo, digest, size)
            assert problem is None, f"manifest accepted onto a hole: {problem}"
            assert requests.head(f"{url}/v2/{repo}/blobs/{digest}").status_code == 200
    remove_trap(database_url)
    return failed
