"""The tags list as the database builds it (``MetadataStore.tags_json``) is the list
``MetadataStore.tags`` reads row by row: the same names, in the same order, paged
the same way (n, last, whether a next page exists), on SQLite and on PostgreSQL.

Tags are inserted in reverse byte order and with names whose byte order differs
from a case-folding or natural order, so an aggregate that followed insertion
order, or a collation other than the page query's, would show.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociregistry.metadata.store import MetadataStore
from tests.cluster.pg import postgres  # noqa: F401  (fixture)

MT = "application/vnd.oci.image.manifest.v1+json"
NAMES = sorted({f"v{i}" for i in range(120)} | {"A", "Z", "_x", "a.b", "a-b", "a_b", "B1",
                                                "latest", "1.0", "10.0", "9.0"})


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    db = MetadataStore(url, durable=False)
    db.create_schema()
    with db.write() as conn:
        repo = db.ensure_repository(conn, "t/app")
        db.ensure_repository(conn, "t/empty")
        digest = "sha256:" + hashlib.sha256(b"{}").hexdigest()
        manifest = db.insert_manifest(conn, repo, digest, MT, b"{}", None, None, None, [], [])
        for name in reversed(NAMES):
            db.set_tag(conn, repo, name, manifest)
    yield db
    db.dispose()


def _expected(db: MetadataStore, n: int | None, last: str | None) -> tuple[list, str | None,
                                                                           bool]:
    rows = db.tags("t/app", None if n is None else n + 1, last)
    assert rows is not None
    page = rows[:n] if n is not None else rows
    # n=0: an empty page has no last tag to go on from (the handler sends no Link).
    more = n is not None and len(rows) > n and bool(page)
    return page, (page[-1] if page else None), more


@pytest.mark.parametrize(("n", "last"), [
    (None, None), (None, "v5"), (0, None), (1, None), (10, None), (10, "a.b"), (50, "v3"),
    (len(NAMES), None), (len(NAMES) - 1, None), (10, NAMES[-2]), (10, NAMES[-1]), (10, "zzz"),
    (5, ""),
])
def test_same_page_as_row_by_row(store: MetadataStore, n: int | None, last: str | None) -> None:
    page = store.tags_json("t/app", n, last)
    assert page is not None
    array, last_tag, more = page
    assert (json.loads(array), last_tag, more) == _expected(store, n, last)


def test_whole_list_in_byte_order(store: MetadataStore) -> None:
    page = store.tags_json("t/app", None, None)
    assert page is not None
    assert json.loads(page[0]) == sorted(NAMES, key=str.encode)
    assert page[2] is False


def test_empty_and_unknown_repositories(store: MetadataStore) -> None:
    assert store.tags_json("t/empty", None, None) == ("[]", None, False)
    assert store.tags_json("t/empty", 10, None) == ("[]", None, False)
    assert store.tags_json("t/none", None, None) is None


def test_walk_by_pages_sees_every_tag_once(store: MetadataStore) -> None:
    seen: list[str] = []
    last = None
    while True:
        page = store.tags_json("t/app", 7, last)
        assert page is not None
        seen += json.loads(page[0])
        if not page[2]:
            break
        last = page[1]
    assert seen == sorted(NAMES)
