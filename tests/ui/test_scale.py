"""10,000 tags: pages are bounded queries (no N+1), whatever the page or its size."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from ociregistry.core.browse import BrowseService
from ociregistry.core.catalog import CatalogService
from ociregistry.core.cursors import CursorCodec
from ociregistry.metadata import schema as t
from tests.ui.conftest import make_app

TAGS = 10_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory):
    app, runtime = make_app(tmp_path_factory.mktemp("big"))
    store = runtime.metadata
    now = time.time()
    with store.write() as conn:
        repo = store.ensure_repository(conn, "big/repo")
        for i in range(20):
            other = store.ensure_repository(conn, f"other/r{i:02d}")
            _manifest(store, conn, other, i, now)
        manifests = [_manifest(store, conn, repo, 100 + i, now) for i in range(100)]
        conn.execute(t.tags.insert(), [
            {"repository_id": repo, "name": f"v{i:05d}", "manifest_id": manifests[i % 100],
             "updated_at": now + i}
            for i in range(TAGS)
        ])
    yield app, runtime
    runtime.metadata.dispose()


def _manifest(store, conn, repo_id: int, n: int, now: float) -> int:
    digest = f"sha256:{n:064x}"
    blob = f"sha256:{n + 10**6:064x}"
    conn.execute(t.blobs.insert().values(digest=blob, size=1000 + n, touched_at=now))
    payload = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob,
                   "size": 1000 + n},
        "layers": [],
    }).encode()
    return store.insert_manifest(conn, repo_id, digest,
                                 "application/vnd.oci.image.manifest.v1+json", payload,
                                 None, None, None, [blob], [])


@contextmanager
def counted(engine: sa.Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def catalog(runtime) -> CatalogService:
    """The service the UI's list pages and /api/v1 share."""
    return CatalogService(BrowseService(runtime.registry, runtime.storage),
                          CursorCodec(b"test key"))


def walk(fetch, cursor=None, pages=1000):
    """Follow next cursors to the last page; (the last page, pages seen)."""
    for seen in range(1, pages + 1):
        page = fetch(cursor)
        if page.next_cursor is None:
            return page, seen
        cursor = page.next_cursor
    raise AssertionError("no last page")


def test_tag_pages_anywhere_in_ten_thousand(big):
    _app, runtime = big
    tags = catalog(runtime)
    last, pages = walk(lambda c: tags.tags("big/repo", limit=100, cursor=c))
    assert pages == 100 and last.items[-1].name == f"v{TAGS - 1:05d}"
    assert tags.count_tags("big/repo") == TAGS
    newest = tags.tags("big/repo", sort="pushed", descending=True, limit=10)
    assert [tag.name for tag in newest.items][:2] == [f"v{TAGS - 1:05d}", f"v{TAGS - 2:05d}"]
    assert len(tags.tags("big/repo", contains="v0999", limit=200).items) == 10
    assert tags.count_tags("big/repo", "v0999") == 10


@pytest.mark.parametrize("per_page", [25, 200])
def test_a_tag_page_costs_the_same_few_statements_at_any_size(big, per_page):
    _app, runtime = big
    tags = catalog(runtime)
    cursor = None
    for _ in range(36):  # to the 37th page
        cursor = tags.tags("big/repo", limit=per_page, cursor=cursor).next_cursor
    with counted(runtime.metadata.engine) as statements:
        page = tags.tags("big/repo", limit=per_page, cursor=cursor)
    assert len(page.items) == per_page
    assert all(tag.size > 1000 for tag in page.items)
    assert len(statements) <= 3, statements  # repository id, page, sizes


def test_pages_render_with_bounded_queries(big):
    app, runtime = big
    client = app.test_client()
    deep = "/ui/r/big/repo?per_page=100"
    for _ in range(79):  # the 80th page of 100
        html = client.get(deep).get_data(as_text=True)
        deep = re.search(r'rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    for path in (deep, "/ui/repositories?sort=size&order=desc",
                 "/ui/repositories?sort=pushed&order=desc", "/ui/"):
        with counted(runtime.metadata.engine) as statements:
            r = client.get(path)
        assert r.status_code == 200, path
        assert len(statements) <= 8, (path, statements)
    html = client.get(deep).get_data(as_text=True)
    assert re.findall(r'-/tag/([^"]+)"', html)[0] == "v07900"
    assert "10,000 tags" in html
    repos = client.get("/ui/repositories?sort=size&order=desc").get_data(as_text=True)
    assert repos.index("big/repo") < repos.index("other/r19") < repos.index("other/r00")


def test_repository_pages_follow_the_visibility_filter(big):
    _app, runtime = big
    repos = catalog(runtime)
    only_sevens = lambda name: name.endswith("7")  # noqa: E731
    page = repos.repositories(limit=5, visible=only_sevens)
    assert [r.name for r in page.items] == ["other/r07", "other/r17"]
    assert repos.count_repositories(visible=only_sevens) == 2
    last, pages = walk(lambda c: repos.repositories(limit=5, cursor=c))
    assert pages == 5 and [r.name for r in last.items] == ["other/r19"]
    assert repos.count_repositories() == 21


def test_index_size_counts_each_child_blob_once(tmp_path: Path):
    from tests.ui import seed

    app, runtime = make_app(tmp_path)
    client = app.test_client()
    amd = seed.image(client, "multi/app", "amd", layer_sizes=(4000,))
    arm = seed.image(client, "multi/app", "arm", arch="arm64", layer_sizes=(6000,))
    digest = seed.index(client, "multi/app", "multi", [
        (amd, {"os": "linux", "architecture": "amd64"}),
        (arm, {"os": "linux", "architecture": "arm64"}),
        (amd, {"os": "linux", "architecture": "amd64", "variant": "again"}),
    ])
    browse = BrowseService(runtime.registry, runtime.storage)
    view = browse.manifest("multi/app", digest)
    assert view.content_size == amd.content_size + arm.content_size
    assert [c.platform for c in view.children] == ["linux/amd64", "linux/arm64",
                                                   "linux/amd64/again"]
    runtime.metadata.dispose()
