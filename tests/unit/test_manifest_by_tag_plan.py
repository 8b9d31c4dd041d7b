"""A manifest by tag is found through the tag's primary key (repository, name), not by
walking the repository's manifests: a HEAD or GET by tag costs the same in a
repository of 10 images and of 10,000 (docs/performance.md, "Scale")."""

from __future__ import annotations

import time
from pathlib import Path

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore


def test_head_by_tag_searches_the_tag_by_key_once_the_database_is_analyzed(tmp_path: Path):
    store = MetadataStore("sqlite:///" + str(tmp_path / "registry.db"))
    store.create_schema()
    now = time.time()
    many = 2000  # one repository holds many manifests, each with a tag; others one each
    with store.write() as conn:
        conn.execute(t.repositories.insert(), [{"id": i, "name": f"r{i}", "created_at": now}
                                               for i in range(1, 201)])
        manifests = [{"id": i, "repository_id": 1 if i <= many else i - many + 1,
                      "digest": f"sha256:{i:064x}", "media_type": "x", "size": 2,
                      "payload": b"{}", "created_at": now} for i in range(1, many + 200)]
        conn.execute(t.manifests.insert(), manifests)
        conn.execute(t.tags.insert(), [{"repository_id": m["repository_id"],
                                        "name": f"t{m['id']}", "manifest_id": m["id"],
                                        "updated_at": now} for m in manifests])
        conn.exec_driver_sql("ANALYZE")  # what a data set of this shape gets in production
    prepared = store._hot["manifest_by_tag"]  # the statement the server runs
    with store.read() as conn:
        args = tuple({"name": "r1", "ref": "t1"}[name] for name in prepared.order)
        plan = [row[-1] for row in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + prepared.sql, args)]
        found = store.get_manifest("r1", "t1999", by_digest=False)
    assert any(line.startswith("SEARCH tags USING") and "repository_id=? AND name=?" in line
               for line in plan), plan
    assert not any("ix_manifests_repository_created" in line for line in plan), plan
    assert found is not None and found.digest == f"sha256:{1999:064x}"
    store.dispose()
