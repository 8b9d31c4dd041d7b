"""Tag listing and the catalog: byte-wise order, n/last paging, Link headers."""

from __future__ import annotations

import json

import pytest
import requests

from tests.helpers import (
    OCI_MANIFEST,
    assert_error,
    make_image,
    next_link,
    push_blob,
    put_manifest,
)
from tests.server import RegistryProcess

TAGS = ["latest", "B", "a", "A", "_x", "1", "10", "9", "a-b", "a.b", "a_b", "Z9", "a0", "v1.0.0"]


@pytest.fixture
def tagged(registry, repo):
    """A repository with every tag in TAGS (pushed one by one)."""
    body = json.dumps(make_image(registry.url, repo, layers=1)).encode()
    for tag in TAGS:
        r = put_manifest(registry.url, repo, tag, body, OCI_MANIFEST)
        assert r.status_code == 201, r.text
    return repo


def _tags_url(registry, repo: str) -> str:
    return f"{registry.url}/v2/{repo}/tags/list"


def _follow(registry, first_url: str, key: str, params: dict) -> list[list[str]]:
    """Every page, following Link headers until there is none."""
    pages = []
    r = requests.get(first_url, params=params)
    while True:
        assert r.status_code == 200, r.text
        pages.append(r.json()[key])
        url = next_link(registry.url, r)
        if url is None:
            return pages
        assert len(pages) <= 100, "Link headers never end"
        r = requests.get(url)


# -- tags -------------------------------------------------------------------------
def test_tags_are_sorted_byte_wise(registry, tagged):
    r = requests.get(_tags_url(registry, tagged))
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["name"] == tagged
    expected = sorted(TAGS, key=lambda t: t.encode())
    assert body["tags"] == expected
    assert expected[:4] == ["1", "10", "9", "A"]
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", [1, 3, 5, len(TAGS) - 1])
def test_tags_paging_follows_link_until_exhausted(registry, tagged, n):
    pages = _follow(registry, _tags_url(registry, tagged), "tags", {"n": n})
    for page in pages:
        assert 0 < len(page) <= n
    flat = [t for page in pages for t in page]
    assert flat == sorted(TAGS, key=lambda t: t.encode())


def test_link_points_at_the_next_page(registry, tagged):
    r = requests.get(_tags_url(registry, tagged), params={"n": 2})
    assert r.json()["tags"] == ["1", "10"]
    link = r.headers["Link"]
    assert link.endswith('rel="next"')
    assert f"/v2/{tagged}/tags/list?" in link
    nxt = requests.get(next_link(registry.url, r))
    assert nxt.json()["tags"] == ["9", "A"]


def test_n_equal_to_the_count_has_no_link(registry, tagged):
    r = requests.get(_tags_url(registry, tagged), params={"n": len(TAGS)})
    assert len(r.json()["tags"]) == len(TAGS)
    # A Link to an empty page is allowed, but then that page must end the list.
    url = next_link(registry.url, r)
    if url is not None:
        last = requests.get(url)
        assert last.json()["tags"] == []
        assert "Link" not in last.headers


def test_last_without_n(registry, tagged):
    r = requests.get(_tags_url(registry, tagged), params={"last": "a0"})
    assert r.status_code == 200
    ordered = sorted(TAGS, key=lambda t: t.encode())
    assert r.json()["tags"] == ordered[ordered.index("a0") + 1:]


def test_last_that_is_not_a_tag(registry, tagged):
    # "last" need not exist: listing resumes after it in byte order.
    r = requests.get(_tags_url(registry, tagged), params={"n": 2, "last": "a,"})
    assert r.json()["tags"] == ["a-b", "a.b"]  # "," < "-" < "." in ASCII
    r = requests.get(_tags_url(registry, tagged), params={"last": "zzz"})
    assert r.json()["tags"] == []


def test_n_larger_than_the_list(registry, tagged):
    r = requests.get(_tags_url(registry, tagged), params={"n": 1000})
    assert r.json()["tags"] == sorted(TAGS, key=lambda t: t.encode())
    assert "Link" not in r.headers


def test_n_zero_returns_an_empty_list_without_link(registry, tagged):
    r = requests.get(_tags_url(registry, tagged), params={"n": 0})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == []
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", ["abc", "-1", "1.5", "0x10"])
def test_bad_n_is_400(registry, tagged, n):
    r = requests.get(_tags_url(registry, tagged), params={"n": n})
    assert r.status_code == 400
    assert r.json()["errors"]


def test_tags_of_unknown_repository_is_404_name_unknown(registry, repo):
    assert_error(requests.get(_tags_url(registry, repo)), 404, "NAME_UNKNOWN")


def test_deleted_tag_disappears_from_the_list(registry, tagged):
    assert requests.delete(f"{registry.url}/v2/{tagged}/manifests/a0").status_code == 202
    tags = requests.get(_tags_url(registry, tagged)).json()["tags"]
    assert "a0" not in tags
    assert len(tags) == len(TAGS) - 1


# -- catalog ----------------------------------------------------------------------
REPOS = ["zeta", "a", "a/b", "a/b/c", "a0", "b-c", "b.c", "b_c", "b__c", "lib/x/y/z", "m--n"]


@pytest.fixture(scope="module")
def catalog_registry(tmp_path_factory):
    """A registry of its own holding exactly REPOS (the shared one has many more)."""
    server = RegistryProcess(tmp_path_factory.mktemp("catalog") / "data").start()
    try:
        for name in REPOS:
            r = put_manifest(server.url, name, "t", make_image(server.url, name, layers=1))
            assert r.status_code == 201, r.text
        yield server
    finally:
        server.stop()


def test_catalog_lists_repositories_byte_wise(catalog_registry):
    r = requests.get(catalog_registry.url + "/v2/_catalog")
    assert r.status_code == 200
    names = r.json()["repositories"]
    assert names == sorted(REPOS, key=lambda n: n.encode())
    # "/" sorts before digits: a nested repository comes before "a0".
    assert names.index("a/b/c") < names.index("a0")


@pytest.mark.parametrize("n", [1, 2, 4, len(REPOS) - 1])
def test_catalog_paging_follows_link_until_exhausted(catalog_registry, n):
    pages = _follow(catalog_registry, catalog_registry.url + "/v2/_catalog", "repositories",
                    {"n": n})
    for page in pages:
        assert 0 < len(page) <= n
    assert [x for page in pages for x in page] == sorted(REPOS, key=lambda n: n.encode())


def test_catalog_last_with_a_nested_name(catalog_registry):
    r = requests.get(catalog_registry.url + "/v2/_catalog", params={"n": 2, "last": "a/b"})
    assert r.json()["repositories"] == ["a/b/c", "a0"]


def test_catalog_n_zero_and_bad_n(catalog_registry):
    r = requests.get(catalog_registry.url + "/v2/_catalog", params={"n": 0})
    assert r.status_code == 200, r.text
    assert r.json()["repositories"] == []
    assert "Link" not in r.headers
    r = requests.get(catalog_registry.url + "/v2/_catalog", params={"n": "many"})
    assert r.status_code == 400
    assert r.json()["errors"]


def test_catalog_skips_repositories_with_only_blobs(fresh_registry):
    put_manifest(fresh_registry.url, "has/manifest", "t",
                 make_image(fresh_registry.url, "has/manifest", layers=1))
    push_blob(fresh_registry.url, "only/blobs", b"data")
    names = requests.get(fresh_registry.url + "/v2/_catalog").json()["repositories"]
    assert names == ["has/manifest"]


def test_empty_catalog(fresh_registry):
    r = requests.get(fresh_registry.url + "/v2/_catalog")
    assert r.status_code == 200
    assert r.json()["repositories"] == []
