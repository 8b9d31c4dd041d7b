"""repository_stats (the maintained size that sorts repositories by size) always equals
the size computed from the references: after pushes sharing layers within and across
repositories, an index, deletes by digest and by tag, and garbage collection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from ociregistry.metadata import schema as t
from ociregistry.metadata.browse_queries import _summary_columns
from ociregistry.metadata.catalog_queries import repositories_after
from tests.cluster.pg import postgres  # noqa: F401 (a throwaway PostgreSQL, on demand)
from tests.ui import seed
from tests.ui.conftest import make_app

DATABASES = ["sqlite", "postgresql"]


def build(tmp_path: Path, database: str, request: pytest.FixtureRequest, **settings):
    if database == "postgresql":
        url = request.getfixturevalue("postgres").create_database()
        settings["database"] = {"url": url}
    return make_app(tmp_path, **settings)


def maintained_and_computed(runtime) -> tuple[dict[str, int], dict[str, int]]:
    columns, _ = _summary_columns()
    size = next(c for c in columns if c.name == "size")
    r, rs = t.repositories, t.repository_stats
    with runtime.metadata.read() as conn:
        computed = {name: int(value) for name, value in conn.execute(sa.select(r.c.name, size))}
        maintained = dict(conn.execute(
            sa.select(r.c.name, sa.func.coalesce(rs.c.size, 0))
            .select_from(r.outerjoin(rs, rs.c.repository_id == r.c.id))).all())
    return maintained, computed


def check(runtime) -> dict[str, int]:
    maintained, computed = maintained_and_computed(runtime)
    assert maintained == computed
    return computed


@pytest.mark.parametrize("database", DATABASES)
def test_maintained_size_follows_pushes_deletes_and_gc(tmp_path: Path, database: str,
                                                       request: pytest.FixtureRequest) -> None:
    app, runtime = build(tmp_path, database, request, gc={"grace_period_seconds": 0})
    client = app.test_client()
    shared = os.urandom(4000)
    first = seed.image(client, "a/one", "v1")
    check(runtime)
    # The same layer twice in one repository counts once; in another repository, again.
    for repo in ("a/one", "b/two"):
        seed.blob(client, repo, shared)
    doc = {"schemaVersion": 2, "mediaType": seed.OCI_MANIFEST,
           "config": {"mediaType": seed.OCI_CONFIG, "digest": first.config_digest,
                      "size": first.config_size},
           "layers": [{"mediaType": seed.OCI_LAYER, "digest": first.layers[0][0],
                       "size": first.layers[0][1]}]}
    seed.manifest(client, "a/one", "v2", doc)  # only blobs v1 already references
    sizes = check(runtime)
    assert sizes["a/one"] == first.content_size
    second = seed.image(client, "b/two", "latest")
    arm = seed.image(client, "b/two", "arm", arch="arm64")
    seed.index(client, "b/two", "multi", [(second, {"os": "linux", "architecture": "amd64"}),
                                          (arm, {"os": "linux", "architecture": "arm64"})])
    check(runtime)
    # Deleting a manifest whose blobs another manifest still references changes nothing.
    v2 = client.head("/v2/a/one/manifests/v2").headers["Docker-Content-Digest"]
    assert client.delete(f"/v2/a/one/manifests/{v2}").status_code == 202
    assert check(runtime)["a/one"] == first.content_size
    assert client.delete(f"/v2/a/one/manifests/{first.digest}").status_code == 202
    assert check(runtime)["a/one"] == 0
    # Untagged manifests swept by the garbage collector.
    assert client.delete("/v2/b/two/manifests/arm").status_code == 202
    runtime.gc.run(delete_untagged=True)
    check(runtime)
    # The listing sorts on it and shows it.
    page = repositories_after(runtime.metadata, sort="size", descending=True, limit=10)
    assert [(p.name, p.size) for p in page] == [("b/two", check(runtime)["b/two"])]
    runtime.metadata.dispose()


@pytest.mark.parametrize("database", DATABASES)
def test_migration_backfills_the_sizes(tmp_path: Path, database: str,
                                       request: pytest.FixtureRequest) -> None:
    from alembic import command

    from ociregistry.metadata.migrate import _config

    app, runtime = build(tmp_path, database, request)
    client = app.test_client()
    seed.image(client, "c/three", "v1")
    seed.image(client, "c/three", "v2")
    seed.image(client, "d/four", "v1", layer_sizes=(7000,))
    expected = check(runtime)
    command.downgrade(_config(runtime.metadata), "0007")
    command.upgrade(_config(runtime.metadata), "head")
    assert check(runtime) == expected
    runtime.metadata.dispose()


def annotation_rows(runtime) -> set[tuple[str, str, str]]:
    a, m = t.manifest_annotations, t.manifests
    with runtime.metadata.read() as conn:
        return set(conn.execute(sa.select(m.c.digest, a.c.key, a.c.value)
                                .select_from(a.join(m, m.c.id == a.c.manifest_id))).all())


@pytest.mark.parametrize("database", DATABASES)
def test_annotations_indexed_at_push_removed_on_delete_backfilled(
        tmp_path: Path, database: str, request: pytest.FixtureRequest) -> None:
    from alembic import command

    from ociregistry.metadata.migrate import _config

    app, runtime = build(tmp_path, database, request)
    client = app.test_client()
    source = "org.opencontainers.image.source"
    one = seed.image(client, "e/five", "v1", annotations={source: "https://git.example/five",
                                                         "long": "x" * 1000})
    two = seed.image(client, "e/five", "v2", annotations={source: "https://git.example/six"})
    expected = {(one.digest, source, "https://git.example/five"),
                (one.digest, "long", "x" * t.ANNOTATION_VALUE),
                (two.digest, source, "https://git.example/six")}
    assert annotation_rows(runtime) == expected
    hits = client.get("/api/v1/search", query_string={"q": "https://git.example/f"}).get_json()
    assert [(h["kind"], h["digest"]) for h in hits["items"]] == [("annotation", one.digest)]
    hits = client.get("/api/v1/search", query_string={"q": source}).get_json()
    assert {h["digest"] for h in hits["items"]} == {one.digest, two.digest}
    assert client.delete(f"/v2/e/five/manifests/{two.digest}").status_code == 202
    expected = {row for row in expected if row[0] != two.digest}
    assert annotation_rows(runtime) == expected
    command.downgrade(_config(runtime.metadata), "0007")
    command.upgrade(_config(runtime.metadata), "head")
    assert annotation_rows(runtime) == expected
    runtime.metadata.dispose()
