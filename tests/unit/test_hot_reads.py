"""The hot read queries cost the same whatever the repository holds.

SQLite counts the virtual-machine steps each statement takes (a progress handler
called every step): a manifest lookup by tag in a repository of 3 tags and in one
of 600 tags on the same manifest, or 600 manifests, must take the same number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociregistry.metadata.store import MetadataStore

MT = "application/vnd.oci.image.manifest.v1+json"


def _digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    db = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}", durable=False)
    db.create_schema()
    yield db
    db.dispose()


def _fill(db: MetadataStore, name: str, manifests: int, tags: int) -> None:
    with db.write() as conn:
        repo = db.ensure_repository(conn, name)
        ids = [db.insert_manifest(conn, repo, _digest(i), MT, b"{}", None, None, None, [], [])
               for i in range(manifests)]
        for i in range(tags):
            db.set_tag(conn, repo, f"v{i:04d}", ids[i % manifests])


def _steps(db: MetadataStore, call: object) -> int:
    counted = [0]

    def tick() -> int:
        counted[0] += 1
        return 0

    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.set_progress_handler(tick, 1)
        try:
            call(conn)  # type: ignore[operator]
        finally:
            raw.set_progress_handler(None, 1)
    return counted[0]


def _by_tag(db: MetadataStore, name: str, tag: str) -> int:
    def call(conn: object) -> None:
        row = db._hot["manifest_by_tag"].run(conn, name=name, ref=tag).first()
        assert row is not None

    return _steps(db, call)


def test_manifest_by_tag_does_not_grow_with_tags_of_the_manifest(store: MetadataStore) -> None:
    _fill(store, "small/app", manifests=1, tags=3)
    _fill(store, "big/app", manifests=1, tags=600)
    assert _by_tag(store, "big/app", "v0001") == _by_tag(store, "small/app", "v0001")


def test_manifest_by_tag_does_not_grow_with_manifests(store: MetadataStore) -> None:
    _fill(store, "small/app", manifests=3, tags=3)
    _fill(store, "big/app", manifests=600, tags=600)
    assert _by_tag(store, "big/app", "v0001") == _by_tag(store, "small/app", "v0001")


def test_get_manifest_by_tag_answers_the_tagged_manifest(store: MetadataStore) -> None:
    _fill(store, "team/app", manifests=5, tags=20)
    row = store.get_manifest("team/app", "v0007", by_digest=False)
    assert row is not None and row.digest == _digest(7 % 5)
    assert store.get_manifest("team/app", "v9999", by_digest=False) is None
    assert store.get_manifest("other/app", "v0007", by_digest=False) is None


def check_tag_pages(db: MetadataStore) -> None:
    """Tags pages read from the driver's cursor: order, n, last, unknown repository."""
    _fill(db, "team/app", manifests=5, tags=30)
    every = [f"v{i:04d}" for i in range(30)]
    assert db.tags("team/app", None, None) == every
    assert db.tags("team/app", 10, None) == every[:10]
    assert db.tags("team/app", 10, "v0025") == every[26:]
    assert db.tags("team/app", None, "v0029") == []
    assert db.tags("team/app", 0, None) == []
    assert db.tags("no/such", None, None) is None
    with db.write() as conn:  # a repository with no tags left is an empty list, not None
        db.ensure_repository(conn, "empty/app")
    assert db.tags("empty/app", None, None) == []
    row = db.get_manifest("team/app", "v0007", by_digest=False)
    assert row is not None and row.digest == _digest(7 % 5)


def test_tag_pages(store: MetadataStore) -> None:
    check_tag_pages(store)


def test_driver_errors_are_sqlalchemys_as_before(tmp_path: Path) -> None:
    """A failing hot read raises the SQLAlchemy error the fault handling knows (faults.py:
    a database that cannot answer is a 503), not the bare driver exception."""
    import sqlalchemy.exc as sa_exc

    from ociregistry.faults import unavailable

    db = MetadataStore(f"sqlite:///{tmp_path / 'no-schema.db'}", durable=False)
    try:
        for call in (lambda: db.get_manifest("a/b", "latest", by_digest=False),
                     lambda: db.repository_blob_size("a/b", _digest(1)),
                     lambda: db.tags("a/b", None, None)):
            with pytest.raises(sa_exc.OperationalError) as caught:
                call()
            assert unavailable(caught.value) == "database"
        # The pool still hands out working connections afterwards.
        db.create_schema()
        assert db.tags("a/b", None, None) is None
    finally:
        db.dispose()
