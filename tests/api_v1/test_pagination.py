"""Keyset pages: walking forward and back, filters, sorts, and tampered cursors."""

from __future__ import annotations

import base64
import json

import pytest

from tests.api_v1.conftest import TAGS

ADMIN = ("admin", "admin-pw")
ALL_TAGS = sorted([*TAGS, "multi"])


def _links(response) -> dict[str, str]:
    return {link["rel"]: link["url"] for link in response.links.values()}


def _walk(http, url, params):
    """Every page, following rel="next"; the responses in order."""
    pages = [http.get(url, params=params, auth=ADMIN, timeout=60)]
    while "next" in _links(pages[-1]):
        assert len(pages) < 50
        pages.append(http.get(_links(pages[-1])["next"], auth=ADMIN, timeout=60))
    return pages


def test_tags_forward_then_back_by_name(live, http):
    url = live.url + "/api/v1/repositories/team/app/tags"
    pages = _walk(http, url, {"limit": 2})
    for page in pages:
        assert page.status_code == 200, page.text
    names = [t["name"] for page in pages for t in page.json()["items"]]
    assert names == ALL_TAGS
    assert "prev" not in _links(pages[0]) and pages[0].json()["prev"] is None
    assert "next" not in _links(pages[-1]) and pages[-1].json()["next"] is None
    # Back from the last page, one page at a time, to the first.
    back = [pages[-1]]
    while "prev" in _links(back[-1]):
        assert len(back) < 50
        back.append(http.get(_links(back[-1])["prev"], auth=ADMIN, timeout=60))
    assert [[t["name"] for t in p.json()["items"]] for p in back] == \
        [[t["name"] for t in p.json()["items"]] for p in reversed(pages)]


def test_tags_by_push_time_newest_first(live, http):
    pages = _walk(http, live.url + "/api/v1/repositories/team/app/tags",
                  {"sort": "pushed", "limit": 3})
    items = [t for page in pages for t in page.json()["items"]]
    assert sorted(t["name"] for t in items) == ALL_TAGS
    times = [t["pushed_at"] for t in items]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize(("params", "expected"), [
    ({"glob": "v1.*"}, ["v1.0", "v1.1", "v1.10"]),
    ({"glob": "v?.?"}, ["v1.0", "v1.1", "v2.0"]),
    ({"prefix": "v2"}, ["v2.0", "v2.1-rc"]),
    ({"exact": "v1.1"}, ["v1.1"]),
    ({"exact": "v1"}, []),
    ({"glob": "v1.*", "order": "desc"}, ["v1.10", "v1.1", "v1.0"]),
])
def test_tag_filters(live, http, params, expected):
    pages = _walk(http, live.url + "/api/v1/repositories/team/app/tags", {**params, "limit": 1})
    assert [t["name"] for page in pages for t in page.json()["items"]] == expected


def test_tag_details(live, http):
    r = http.get(live.url + "/api/v1/repositories/team/app/tags", auth=ADMIN, timeout=60,
                 params={"exact": "multi"})
    (tag,) = r.json()["items"]
    assert tag["digest"] == live.digests["team/app:multi"]
    assert tag["kind"] == "index" and tag["platforms"] == ["linux/amd64", "linux/arm64"]
    assert tag["size"] > 0
    r = http.get(live.url + "/api/v1/repositories/team/app/tags", auth=ADMIN, timeout=60,
                 params={"exact": "v1.0"})
    (tag,) = r.json()["items"]
    assert tag["artifact_type"] == "application/vnd.oci.image.config.v1+json"


@pytest.mark.parametrize("sort", ["name", "pushed", "size"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_repositories_every_sort_walks_every_repository_once(live, http, sort, order):
    pages = _walk(http, live.url + "/api/v1/repositories",
                  {"sort": sort, "order": order, "limit": 1})
    items = [r for page in pages for r in page.json()["items"]]
    assert sorted(r["name"] for r in items) == \
        ["public/base", "secret/thing", "team/app", "team/other"]
    key = {"name": "name", "pushed": "last_push", "size": "size"}[sort]
    values = [r[key] for r in items]
    assert values == sorted(values, reverse=order == "desc")


def test_repository_search_and_usage(live, http):
    r = http.get(live.url + "/api/v1/repositories", params={"q": "APP"}, auth=ADMIN, timeout=60)
    assert [x["name"] for x in r.json()["items"]] == ["team/app"]
    r = http.get(live.url + "/api/v1/repositories", params={"glob": "team/*"}, auth=ADMIN,
                 timeout=60)
    repos = r.json()["items"]
    assert [x["name"] for x in repos] == ["team/app", "team/other"]
    usage = http.get(live.url + "/api/v1/namespaces/team/usage", auth=ADMIN, timeout=60).json()
    assert usage["repositories"] == 2 and usage["tags"] == len(ALL_TAGS) + 1
    # No blob is shared between the two: the namespace's size is the sum.
    assert usage["size"] == sum(x["size"] for x in repos)


def test_search_finds_annotations_tags_and_names(live, http):
    # Annotations: the value by prefix, the key exactly (indexed lookups).
    for q in ("https://git.example", "org.opencontainers.image.source"):
        r = http.get(live.url + "/api/v1/search", params={"q": q}, auth=ADMIN, timeout=60)
        hits = r.json()["items"]
        assert {h["kind"] for h in hits} == {"annotation"} and len(hits) == len(TAGS), q
        assert (hits[0]["annotations"]["org.opencontainers.image.source"]
                == "https://git.example/app")
    r = http.get(live.url + "/api/v1/search", params={"q": "git.example"}, auth=ADMIN,
                 timeout=60)
    assert r.json()["items"] == []  # not a value's prefix, not a key
    r = http.get(live.url + "/api/v1/search", params={"q": "rc"}, auth=ADMIN, timeout=60)
    assert {"kind": "tag", "repository": "team/app", "tag": "v2.1-rc", "digest": None,
            "annotations": None} in r.json()["items"]


def test_manifest_detail(live, http):
    digest = live.digests["team/app:multi"]
    r = http.get(f"{live.url}/api/v1/repositories/team/app/manifests/{digest}", auth=ADMIN,
                 timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "index" and body["platforms"] == ["linux/amd64", "linux/arm64"]
    assert body["tags"] == ["multi"]
    digest = live.digests["team/app:v1.0"]
    body = http.get(f"{live.url}/api/v1/repositories/team/app/manifests/{digest}", auth=ADMIN,
                    timeout=60).json()
    assert body["config"]["image"]["platform"] == "linux/amd64" and len(body["layers"]) == 1
    assert body["annotations"]["org.opencontainers.image.version"] == "v1.0"


def _tamper(cursor: str) -> list[str]:
    body, mac = cursor.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    decoded["n"] = "v0"
    forged = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode().rstrip("=")
    return [f"{forged}.{mac}", cursor[:-1] + ("A" if cursor[-1] != "A" else "B"),
            "not-a-cursor", body, cursor + ".x", "%00", "é.é", f"{body}.{mac[:-1]}é"]


def test_tampered_or_foreign_cursors_are_a_400_problem(live, http):
    url = live.url + "/api/v1/repositories/team/app/tags"
    cursor = http.get(url, params={"limit": 2}, auth=ADMIN, timeout=60).json()["next"]
    assert cursor
    for bad in _tamper(cursor):
        r = http.get(url, params={"limit": 2, "cursor": bad}, auth=ADMIN, timeout=60)
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json()["code"] in ("invalid_cursor", "invalid_parameter")
    # A good cursor used for another listing (another sort, filter or repository).
    for other_url, params in [(url, {"sort": "pushed"}), (url, {"glob": "v*"}),
                              (live.url + "/api/v1/repositories/team/other/tags", {}),
                              (live.url + "/api/v1/repositories", {})]:
        r = http.get(other_url, params={**params, "cursor": cursor}, auth=ADMIN, timeout=60)
        assert r.status_code == 400 and r.json()["code"] == "invalid_cursor", r.text


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "x", "1e3", ""])
def test_limit_out_of_range_is_a_400_problem(live, http, limit):
    r = http.get(live.url + "/api/v1/repositories", params={"limit": limit}, auth=ADMIN,
                 timeout=60)
    assert r.status_code == 400 and r.json()["code"] == "invalid_parameter"


def test_a_page_of_1000_is_allowed(live, http):
    r = http.get(live.url + "/api/v1/repositories/team/app/tags", params={"limit": 1000},
                 auth=ADMIN, timeout=60)
    assert r.status_code == 200 and len(r.json()["items"]) == len(ALL_TAGS)
    assert "Link" not in r.headers
