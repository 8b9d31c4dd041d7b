"""The registry on PostgreSQL: real API flows against a real server.

A throwaway PostgreSQL 15 cluster (tests/cluster/pg.py) holds the metadata; the
registry is the real one (gunicorn, 2 workers) with
``database.url: postgresql+psycopg://...``. The whole API suite can also run on
PostgreSQL: ``REGISTRY_TEST_DATABASE_URL=<server url> pytest tests/api``.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.api import test_gc_concurrency as race
from tests.cluster.pg import PostgresCluster
from tests.helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    absolute,
    make_image,
    next_link,
    push_blob,
    put_manifest,
    sha256,
)
from tests.server import RegistryProcess

ACCEPT = {"Accept": f"{OCI_MANIFEST},{OCI_INDEX}"}


@pytest.fixture(scope="module")
def pg_registry(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    url = postgres.create_database()
    base = tmp_path_factory.mktemp("pg-registry")
    server = RegistryProcess(base / "data", env={"OCIREGISTRY_DATABASE__URL": url})
    server.database_url = url  # type: ignore[attr-defined]
    server.start()
    yield server
    server.stop()


@pytest.fixture
def repo() -> str:
    return f"pg/{uuid.uuid4().hex[:12]}"


def test_metadata_really_is_in_postgresql(pg_registry, repo):
    manifest = make_image(pg_registry.url, repo)
    assert put_manifest(pg_registry.url, repo, "v1", manifest).status_code == 201
    engine = sa.create_engine(pg_registry.database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            assert conn.dialect.name == "postgresql"
            heads = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            assert list(heads)  # migrations applied
            names = conn.exec_driver_sql("SELECT name FROM repositories").scalars().all()
            assert repo in names
            collation = conn.exec_driver_sql(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_name = 'tags' AND column_name = 'name'"
            ).scalar()
            assert collation == "C"
    finally:
        engine.dispose()
    assert not (Path(pg_registry.data_dir) / "registry.db").exists()


def test_push_and_pull_an_image(pg_registry, repo):
    url = pg_registry.url
    manifest = make_image(url, repo, layers=3)
    body = json.dumps(manifest).encode()
    r = put_manifest(url, repo, "latest", body)
    assert r.status_code == 201, r.text
    digest = r.headers["Docker-Content-Digest"]
    assert digest == sha256(body)
    for ref in ("latest", digest):
        r = requests.get(f"{url}/v2/{repo}/manifests/{ref}", headers=ACCEPT)
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Content-Type"] == OCI_MANIFEST
        head = requests.head(f"{url}/v2/{repo}/manifests/{ref}", headers=ACCEPT)
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(body))
    for layer in [manifest["config"], *manifest["layers"]]:
        r = requests.get(f"{url}/v2/{repo}/blobs/{layer['digest']}")
        assert r.status_code == 200
        assert sha256(r.content) == layer["digest"]
        head = requests.head(f"{url}/v2/{repo}/blobs/{layer['digest']}")
        assert head.headers["Content-Length"] == str(layer["size"])
    # a blob is visible only in the repositories that link it
    other = f"pg/{uuid.uuid4().hex[:12]}"
    r = requests.head(f"{url}/v2/{other}/blobs/{manifest['layers'][0]['digest']}")
    assert r.status_code == 404


def test_chunked_upload_and_range_read(pg_registry, repo):
    url = pg_registry.url
    data = os.urandom(300_000)
    location = absolute(url, requests.post(f"{url}/v2/{repo}/blobs/uploads/").headers["Location"])
    offset = 0
    for size in (100_000, 150_000):
        chunk = data[offset:offset + size]
        r = requests.patch(
            location, data=chunk,
            headers={"Content-Type": "application/octet-stream",
                     "Content-Range": f"{offset}-{offset + size - 1}"},
        )
        assert r.status_code == 202, r.text
        offset += size
        location = absolute(url, r.headers["Location"])
        status = requests.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{offset - 1}"
    r = requests.put(location, params={"digest": sha256(data)}, data=data[offset:])
    assert r.status_code == 201, r.text
    r = requests.get(f"{url}/v2/{repo}/blobs/{sha256(data)}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == data[10:20]


def test_cross_repository_mount(pg_registry, repo):
    url = pg_registry.url
    data = os.urandom(4096)
    digest = push_blob(url, repo, data)
    target = f"pg/{uuid.uuid4().hex[:12]}"
    r = requests.post(f"{url}/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo})
    assert r.status_code == 201, r.text
    assert requests.get(f"{url}/v2/{target}/blobs/{digest}").content == data


def test_index_of_two_platforms(pg_registry, repo):
    url = pg_registry.url
    children = []
    for arch in ("amd64", "arm64"):
        body = json.dumps(make_image(url, repo)).encode()
        r = put_manifest(url, repo, sha256(body), body)
        assert r.status_code == 201, r.text
        children.append({"mediaType": OCI_MANIFEST, "digest": sha256(body), "size": len(body),
                         "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    r = put_manifest(url, repo, "multi", index.encode(), OCI_INDEX)
    assert r.status_code == 201, r.text
    r = requests.get(f"{url}/v2/{repo}/manifests/multi", headers=ACCEPT)
    assert r.status_code == 200
    assert r.content == index.encode()
    for child in children:
        r = requests.get(f"{url}/v2/{repo}/manifests/{child['digest']}", headers=ACCEPT)
        assert r.status_code == 200
    # an index whose child is missing is refused
    bad = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**children[0], "digest": sha256(b"nothing")}]})
    r = put_manifest(url, repo, "bad", bad.encode(), OCI_INDEX)
    assert r.status_code == 400
    assert "MANIFEST_BLOB_UNKNOWN" in r.text


MIXED_TAGS = ["b", "A", "a", "Z", "_x", "0", "a-1", "a.1", "a_1", "B", "z9", "Latest", "latest"]


def test_tags_are_byte_ordered_and_paged(pg_registry, repo):
    url = pg_registry.url
    body = json.dumps(make_image(url, repo, layers=1)).encode()
    for tag in MIXED_TAGS:
        assert put_manifest(url, repo, tag, body).status_code == 201
    expected = sorted(MIXED_TAGS, key=lambda s: s.encode())
    r = requests.get(f"{url}/v2/{repo}/tags/list")
    assert r.json() == {"name": repo, "tags": expected}
    # n/last paging, following Link, gives the same list
    seen = []
    page = f"{url}/v2/{repo}/tags/list?n=3"
    while page:
        r = requests.get(page)
        assert r.status_code == 200
        seen += r.json()["tags"]
        page = next_link(url, r)
    assert seen == expected
    r = requests.get(f"{url}/v2/{repo}/tags/list", params={"n": 2, "last": "Z"})
    assert r.json()["tags"] == expected[expected.index("Z") + 1:][:2]


def test_catalog_is_byte_ordered_and_paged(pg_registry):
    url = pg_registry.url
    prefix = f"cat{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}/{s}" for s in ("a", "a-b", "a.b", "a_b", "a/b", "ab", "a0")]
    for name in names:
        body = json.dumps(make_image(url, name, layers=1)).encode()
        assert put_manifest(url, name, "v1", body).status_code == 201
    full = requests.get(f"{url}/v2/_catalog").json()["repositories"]
    assert full == sorted(full, key=lambda s: s.encode())
    assert [n for n in full if n.startswith(prefix + "/")] == sorted(names, key=str.encode)
    seen = []
    page = f"{url}/v2/_catalog?n=4"
    while page:
        r = requests.get(page)
        seen += r.json()["repositories"]
        page = next_link(url, r)
    assert seen == full


def test_referrers(pg_registry, repo):
    url = pg_registry.url
    subject_body = json.dumps(make_image(url, repo, layers=1)).encode()
    assert put_manifest(url, repo, "v1", subject_body).status_code == 201
    subject = {"mediaType": OCI_MANIFEST, "digest": sha256(subject_body),
               "size": len(subject_body)}
    empty = {"mediaType": "application/vnd.oci.empty.v1+json",
             "digest": push_blob(url, repo, b"{}"), "size": 2}
    pushed = {}
    for kind in ("application/sbom", "application/signature"):
        artifact = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
            "config": empty, "layers": [empty], "subject": subject,
            "annotations": {"kind": kind},
        }
        body = json.dumps(artifact).encode()
        r = put_manifest(url, repo, sha256(body), body)
        assert r.status_code == 201, r.text
        assert r.headers["OCI-Subject"] == subject["digest"]
        pushed[sha256(body)] = kind
    r = requests.get(f"{url}/v2/{repo}/referrers/{subject['digest']}")
    assert r.status_code == 200
    found = {d["digest"]: d for d in r.json()["manifests"]}
    assert {d: v["artifactType"] for d, v in found.items()} == pushed
    assert all(v["annotations"] == {"kind": v["artifactType"]} for v in found.values())
    r = requests.get(f"{url}/v2/{repo}/referrers/{subject['digest']}",
                     params={"artifactType": "application/sbom"})
    assert [d["artifactType"] for d in r.json()["manifests"]] == ["application/sbom"]


def test_delete_by_tag_and_by_digest(pg_registry, repo):
    url = pg_registry.url
    body = json.dumps(make_image(url, repo)).encode()
    digest = sha256(body)
    for tag in ("one", "two"):
        assert put_manifest(url, repo, tag, body).status_code == 201
    assert requests.delete(f"{url}/v2/{repo}/manifests/one").status_code == 202
    assert requests.get(f"{url}/v2/{repo}/manifests/one", headers=ACCEPT).status_code == 404
    assert requests.get(f"{url}/v2/{repo}/manifests/two", headers=ACCEPT).status_code == 200
    assert requests.delete(f"{url}/v2/{repo}/manifests/{digest}").status_code == 202
    for ref in ("two", digest):
        r = requests.get(f"{url}/v2/{repo}/manifests/{ref}", headers=ACCEPT)
        assert r.status_code == 404
        assert "MANIFEST_UNKNOWN" in r.text
    assert requests.get(f"{url}/v2/{repo}/tags/list").json()["tags"] == []
    assert requests.delete(f"{url}/v2/{repo}/manifests/{digest}").status_code == 404


def test_concurrent_pushes_of_one_manifest_to_a_new_repository(pg_registry, repo):
    """Upserts and the manifest lock: every push wins, none is a 500."""
    url = pg_registry.url
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(2048)
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
    }
    body = json.dumps(manifest).encode()
    results: list[tuple[str, int, str]] = []
    barrier = threading.Barrier(8)

    def push(i: int) -> None:
        session = requests.Session()
        barrier.wait()
        for data in (config, layer):
            r = session.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)},
                             data=data, timeout=120)
            results.append(("blob", r.status_code, r.text))
        r = session.put(f"{url}/v2/{repo}/manifests/t{i}", data=body,
                        headers={"Content-Type": OCI_MANIFEST}, timeout=120)
        results.append(("manifest", r.status_code, r.text))

    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r for r in results if r[1] != 201] == []
    tags = requests.get(f"{url}/v2/{repo}/tags/list").json()["tags"]
    assert tags == sorted(f"t{i}" for i in range(8))
    assert requests.get(f"{url}/v2/_catalog").json()["repositories"].count(repo) == 1


@pytest.fixture
def gc_registry(postgres: PostgresCluster, tmp_path: Path) -> Iterator[RegistryProcess]:
    env = {
        "OCIREGISTRY_DATABASE__URL": postgres.create_database(),
        "OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0",
    }
    server = RegistryProcess(tmp_path / "data", env=env).start()
    yield server
    server.stop()


def test_gc_with_concurrent_pushes_never_loses_a_pushed_image(gc_registry):
    """The GC race of tests/api/test_gc_concurrency.py, decided by PostgreSQL locks."""
    race.test_concurrent_push_and_gc_never_lose_a_pushed_blob(gc_registry)
