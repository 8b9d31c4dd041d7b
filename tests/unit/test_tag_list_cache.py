"""Tags list pages kept in process (metadata/tag_list_cache.py) are never stale.

Two stores on one database stand for two workers (or instances): each keeps its own
pages; every tag change made through one, or by SQL behind both (a rename, a
repository's cascade), must show at once in the other's next read, on SQLite and on
PostgreSQL. Migration 0018's triggers bump ``repositories.tags_version``; a tag
moved to another manifest leaves the list and the version as they were.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ociregistry.metadata.store import MetadataStore
from ociregistry.metadata.tag_list_cache import TagListCache
from tests.cluster.pg import postgres  # noqa: F401  (fixture)

MT = "application/vnd.oci.image.manifest.v1+json"
PAGES = [(None, None), (2, None), (2, "b"), (1, "c")]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def stores(url: str) -> Iterator[tuple[MetadataStore, MetadataStore]]:
    one = MetadataStore(url, durable=False, tags_cache_bytes=1 << 20)
    one.create_schema()
    two = MetadataStore(url, durable=False, tags_cache_bytes=1 << 20)
    yield one, two
    one.dispose()
    two.dispose()


def manifest(db: MetadataStore, repo: str, body: bytes) -> tuple[int, int, str]:
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    with db.write() as conn:
        repo_id = db.ensure_repository(conn, repo)
        mid = db.insert_manifest(conn, repo_id, digest, MT, body, None, None, None, [], [])
    return repo_id, mid, digest


def tag(db: MetadataStore, repo_id: int, name: str, manifest_id: int) -> None:
    with db.write() as conn:
        db.set_tag(conn, repo_id, name, manifest_id)


def version(db: MetadataStore, repo: str) -> int:
    with db.read() as conn:
        return conn.execute(sa.text("SELECT tags_version FROM repositories WHERE name = :n"),
                            {"n": repo}).scalar_one()


def assert_exact(db: MetadataStore, repo: str) -> None:
    """Every page as the rows say it is now (read row by row, never cached)."""
    for n, last in PAGES:
        page = db.tags_json(repo, n, last)
        rows = db.tags(repo, None, last)
        assert page is not None and rows is not None
        want = rows if n is None else rows[:n]
        assert json.loads(page[0]) == want, (n, last)
        assert page[1] == (want[-1] if want else None)
        assert page[2] == (n is not None and len(rows) > n and bool(want))


def read_everywhere(stores: tuple[MetadataStore, ...], repo: str) -> None:
    for db in stores:
        assert_exact(db, repo)
        assert_exact(db, repo)  # the second time from the cache, still exact


def test_every_change_of_names_shows_at_once_in_the_other_store(stores):
    one, two = stores
    repo_id, a, _ = manifest(one, "t/app", b'{"a":1}')
    _, b, digest_b = manifest(one, "t/app", b'{"b":1}')
    for name in ("d", "b", "a", "c"):
        tag(one, repo_id, name, a)
    read_everywhere(stores, "t/app")
    hits = two.tags_cache.hits
    assert hits > 0  # pages were served from the cache

    tag(one, repo_id, "e", b)  # created through one
    assert json.loads(two.tags_json("t/app", None, None)[0]) == ["a", "b", "c", "d", "e"]
    read_everywhere(stores, "t/app")

    assert two.delete_tag("t/app", "a")  # deleted through the other
    assert json.loads(one.tags_json("t/app", None, None)[0]) == ["b", "c", "d", "e"]
    read_everywhere(stores, "t/app")

    assert one.delete_manifest("t/app", digest_b)  # its tag "e" goes with it
    assert json.loads(two.tags_json("t/app", None, None)[0]) == ["b", "c", "d"]
    read_everywhere(stores, "t/app")

    with one.write() as conn:  # a rename by SQL, behind both stores' backs
        conn.execute(sa.text("UPDATE tags SET name = 'z' WHERE repository_id = :r"
                             " AND name = 'c'"), {"r": repo_id})
    assert json.loads(two.tags_json("t/app", None, None)[0]) == ["b", "d", "z"]
    assert two.tags_json("t/app", 1, "b") == ('["d"]', "d", True)
    read_everywhere(stores, "t/app")


def test_a_tag_moved_keeps_the_version_and_the_kept_pages(stores):
    one, two = stores
    repo_id, a, _ = manifest(one, "t/app", b'{"a":1}')
    _, b, _ = manifest(one, "t/app", b'{"b":1}')
    tag(one, repo_id, "v1", a)
    before = version(one, "t/app")
    assert before >= 1
    two.tags_json("t/app", None, None)
    tag(one, repo_id, "v1", b)  # moved: the names are the same
    assert version(one, "t/app") == before
    hits = two.tags_cache.hits
    assert two.tags_json("t/app", None, None) == ('["v1"]', "v1", False)
    assert two.tags_cache.hits == hits + 1


def test_a_repository_deleted_and_made_again_is_not_served_the_old_list(stores):
    one, two = stores
    repo_id, a, _ = manifest(one, "t/app", b'{"a":1}')
    tag(one, repo_id, "old", a)
    assert json.loads(two.tags_json("t/app", None, None)[0]) == ["old"]
    with one.write() as conn:  # its tags, manifests go by cascade
        conn.execute(sa.text("DELETE FROM tags WHERE repository_id = :r"), {"r": repo_id})
        conn.execute(sa.text("DELETE FROM manifests WHERE repository_id = :r"), {"r": repo_id})
        conn.execute(sa.text("DELETE FROM repositories WHERE id = :r"), {"r": repo_id})
    assert two.tags_json("t/app", None, None) is None
    # Made again (on SQLite possibly with the same id), with as many tag changes.
    new_id, m, _ = manifest(one, "t/app", b'{"new":1}')
    tag(one, new_id, "new", m)
    assert json.loads(two.tags_json("t/app", None, None)[0]) == ["new"]
    read_everywhere(stores, "t/app")


def test_the_cache_holds_at_most_its_bytes_dropping_the_least_recently_read():
    cache = TagListCache(1000)
    page = ('["' + "x" * 300 + '"]', "x" * 300, False)
    for repo in range(3):
        cache.put((repo, 0.0), 1, (None, ""), page)
    assert cache.bytes <= 1000
    assert cache.get((0, 0.0), 1, (None, "")) is None  # the first one went
    assert cache.get((2, 0.0), 1, (None, "")) == page
    assert cache.get((2, 0.0), 2, (None, "")) is None  # another version: not this page
    cache.put((2, 0.0), 1, (10, ""), ('["' + "y" * 2000 + '"]', "y", False))  # too big
    assert cache.get((2, 0.0), 1, (10, "")) is None
    cache.put((2, 0.0), 3, (None, ""), page)  # a newer version replaces the older pages
    cache.put((2, 0.0), 2, (None, ""), ("[]", None, False))  # an older one is not kept
    assert cache.get((2, 0.0), 3, (None, "")) == page
    assert cache.get((2, 0.0), 2, (None, "")) is None


@pytest.fixture
def pg_stores(postgres) -> Iterator[tuple[MetadataStore, MetadataStore]]:  # noqa: F811
    url = postgres.create_database()
    one = MetadataStore(url, durable=False, tags_cache_bytes=1 << 20)
    one.create_schema()
    two = MetadataStore(url, durable=False, tags_cache_bytes=1 << 20)
    yield one, two
    one.dispose()
    two.dispose()


def test_postgres_a_tag_change_waits_for_no_other_until_commit(pg_stores):
    """PostgreSQL: the version's row lock is taken at commit (deferred triggers), after
    every other lock of the transaction. Taken at the tag's statement, a tag deleted by
    one transaction (retention: then the next manifest's lock) and a tag created by
    another (a push: holding that manifest's lock) would wait for each other."""
    stores = pg_stores  # SQLite has one writer at a time: no lock order to get wrong
    one, two = stores
    repo_id, a, _ = manifest(one, "t/app", b'{"a":1}')
    tag(one, repo_id, "old", a)
    locked, deleted = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def push() -> None:
        try:
            with two.write() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('manifest:x'))"))
                locked.set()
                assert deleted.wait(60)
                two.set_tag(conn, repo_id, "new", a)
        except BaseException as exc:
            errors.append(exc)
            locked.set()

    def retention() -> None:
        try:
            assert locked.wait(60)
            with one.write() as conn:
                conn.execute(sa.text("DELETE FROM tags WHERE repository_id = :r AND"
                                     " name = 'old'"), {"r": repo_id})
                deleted.set()
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('manifest:x'))"))
        except BaseException as exc:
            errors.append(exc)
            deleted.set()

    threads = [threading.Thread(target=push), threading.Thread(target=retention)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert json.loads(two.tags_json("t/app", None, None)[0]) == ["new"]
    read_everywhere(stores, "t/app")
