"""``GET /v2/`` and the tags list on the fast route (web/fast_listings.py) answer
exactly what Flask does.

The harness of tests/api/test_fast_reads.py (tests/api/fast_reads_support.py): each
request is sent through the whole WSGI chain with the fast route switched off (Flask
answers) and on, and status, headers (names, values, order), body, the access-log
record (but the duration), the metrics each adds and which side answered must be as
stated. Covered: the base endpoint (GET, HEAD, auth none / htpasswd / tokens,
anonymous challenged), tags lists (whole, paged with ``Link``, ``n=0``, ``last`` past
the end, an empty repository, a tag added and removed between two requests, a
thousand tags), and what stays Flask's (unknown and invalid names, bad ``n``, other
queries, HEAD, refusals, robots, mirror names, rate limits, the switch).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from ociregistry.auth.robots import parse_scope
from ociregistry.web.fast_listings import BASE_ROUTE, TAGS_ROUTE
from tests.api.fast_reads_support import OCI_CONFIG, SERVICE, Harness, _digest
from tests.auth.support import PASSWORDS, RULES
from tests.helpers import OCI_MANIFEST


def _basic(user: str, password: str | None = None) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password or PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _token(h: Harness, user: str | None, scope: str) -> str:
    r = h.client.get("/auth/token", query_string={"service": SERVICE, "scope": scope},
                     headers=_basic(user) if user else {})
    assert r.status_code == 200, r.get_data()
    return r.get_json()["token"]


def _tags(answer: dict) -> list[str]:
    return json.loads(answer["body"])["tags"]


@pytest.fixture
def open_registry(tmp_path: Path) -> Harness:
    return Harness(tmp_path, None)


# -- the base endpoint ----------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_base_without_auth(open_registry: Harness, method: str) -> None:
    h = open_registry
    answer = h.both(method, "/v2/", fast=True)
    assert answer["body"] == (b"{}" if method == "GET" else b"")
    assert ("Content-Length", "2") in answer["headers"]
    assert answer["log"][1]["route"] == BASE_ROUTE
    assert any(dict(labels).get("route") == BASE_ROUTE for _, labels in answer["metrics"])
    h.both(method, "/v2/", {"User-Agent": "docker/27.0", "Accept": "*/*"}, fast=True)
    # A random request id when the client sends none or a bad one (same format both ways).
    r = h.client.open("/v2/", method=method, headers={"X-Request-ID": "bad id!"})
    assert r.status_code == 200 and len(r.headers["X-Request-ID"]) == 32
    # Unusual: Flask's.
    h.both(method, "/v2/?x=1", fast=False)
    h.both(method, "/v2/", {"Cookie": "a=b"}, fast=False)
    h.both(method, "/v2/", {"If-None-Match": '"x"'}, fast=False)
    h.both(method, "/v2", fast=False, status=308)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_base_with_basic_auth(tmp_path: Path, method: str) -> None:
    h = Harness(tmp_path, "basic")
    h.image("team-a/app", "v1", user="alice")  # alice's password is now verified here
    # Anonymous callers are challenged on /v2/ (even where anonymous pulls are allowed).
    h.both(method, "/v2/", fast=False, status=401)
    h.both(method, "/v2/", {"Authorization": "Basic Og=="}, fast=False, status=401)
    answer = h.both(method, "/v2/", _basic("alice"), fast=True)
    assert answer["log"][1]["user"] == "alice"
    # A first login (bcrypt, the failed-attempt limits) is Flask's; then fast.
    assert h._once(True, method, "/v2/", _basic("bob"))["flask"]
    h.both(method, "/v2/", _basic("bob"), fast=True)
    h.both(method, "/v2/", _basic("alice", "wrong"), fast=False, status=401)
    h.both(method, "/v2/", {"Authorization": "Basic !!!"}, fast=False, status=401)
    h.both(method, "/v2/", {"Authorization": "Bearer abc"}, fast=False, status=401)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_base_with_tokens(tmp_path: Path, method: str) -> None:
    h = Harness(tmp_path, "token")
    h.both(method, "/v2/", fast=False, status=401)
    answer = h.both(method, "/v2/", {"Authorization": f"Bearer {_token(h, 'alice', '')}"},
                    fast=True)
    assert answer["log"][1]["user"] == "alice"
    # An anonymous token: authenticated as nobody, as Flask's hook sees it.
    h.both(method, "/v2/", {"Authorization": f"Bearer {_token(h, None, '')}"}, fast=True)
    forged = _token(h, "alice", "")[:-4] + "AAAA"
    h.both(method, "/v2/", {"Authorization": f"Bearer {forged}"}, fast=False, status=401)
    h.both(method, "/v2/", _basic("alice"), fast=False, status=401)


# -- tags lists -------------------------------------------------------------------------
def test_tags_list_pages(open_registry: Harness) -> None:
    h = open_registry
    body, _ = h.image("fast/tags", "b1")
    for tag in ("a1", "c1", "b2", "v1.0", "v1.0-rc_1"):
        h.manifest("fast/tags", tag, body, OCI_MANIFEST)
    path = "/v2/fast/tags/tags/list"
    answer = h.both("GET", path, fast=True)
    assert _tags(answer) == ["a1", "b1", "b2", "c1", "v1.0", "v1.0-rc_1"]
    assert not any(k == "Link" for k, _ in answer["headers"])
    assert answer["log"][1]["route"] == TAGS_ROUTE
    # Paged: a Link to the next page until the last one, walked both ways.
    seen, query = [], "?n=2"
    while query:
        answer = h.both("GET", path + query, fast=True)
        seen += _tags(answer)
        link = dict(answer["headers"]).get("Link")
        query = re.match(r"<[^?]+(\?[^>]+)>", link).group(1) if link else ""
    assert seen == ["a1", "b1", "b2", "c1", "v1.0", "v1.0-rc_1"]
    for query in ("?n=0", "?n=", "?last=", "?last=b1", "?last=zzz", "?n=3&last=b1",
                  "?last=b1&n=3", "?n=100", "?n=99999999999999999999", "?n=6", "?n=5",
                  "?n=0&last=a1", "?last=v1.0"):
        h.both("GET", path + query, fast=True)
    assert _tags(h.both("GET", path + "?n=0", fast=True)) == []
    assert _tags(h.both("GET", path + "?last=b2", fast=True)) == ["c1", "v1.0", "v1.0-rc_1"]
    # A manifest pushed by digest adds no tag.
    config = h.blob("fast/tags", b'{"os": "linux", "architecture": "arm64"}')
    other = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                        "layers": []}).encode()
    h.manifest("fast/tags", _digest(other), other, OCI_MANIFEST)
    assert len(_tags(h.both("GET", path, fast=True))) == 6


def test_tags_list_sees_changes_at_once(open_registry: Harness) -> None:
    """The list is cached per worker, under the repository's tags_version: a tag added
    or removed between two requests is in the next answer (no stale list)."""
    h = open_registry
    h.image("fast/live", "one")
    path = "/v2/fast/live/tags/list"
    assert _tags(h.both("GET", path, fast=True)) == ["one"]
    assert _tags(h.both("GET", path + "?n=1", fast=True)) == ["one"]
    h.image("fast/live", "two")
    assert _tags(h.both("GET", path, fast=True)) == ["one", "two"]
    assert _tags(h.both("GET", path + "?n=1", fast=True)) == ["one"]
    assert ("Link", '</v2/fast/live/tags/list?n=1&last=one>; rel="next"') in \
        h.both("GET", path + "?n=1", fast=True)["headers"]
    assert h.client.delete("/v2/fast/live/manifests/one").status_code == 202
    assert _tags(h.both("GET", path, fast=True)) == ["two"]
    assert _tags(h.both("GET", path + "?n=1", fast=True)) == ["two"]
    # The last tag gone: an empty repository still answers its (empty) list.
    assert h.client.delete("/v2/fast/live/manifests/two").status_code == 202
    assert _tags(h.both("GET", path, fast=True)) == []
    h.image("fast/live", "three")
    assert _tags(h.both("GET", path, fast=True)) == ["three"]


def test_empty_and_large_repositories(open_registry: Harness) -> None:
    h = open_registry
    h.blob("fast/blobs-only", b"a blob and no manifest")
    answer = h.both("GET", "/v2/fast/blobs-only/tags/list", fast=True)
    assert answer["body"] == b'{"name": "fast/blobs-only", "tags": []}'
    body, _ = h.image("fast/many", "t0000")
    for i in range(1, 1000):
        h.manifest("fast/many", f"t{i:04d}", body, OCI_MANIFEST)
    answer = h.both("GET", "/v2/fast/many/tags/list", fast=True)
    assert _tags(answer) == [f"t{i:04d}" for i in range(1000)]
    h.both("GET", "/v2/fast/many/tags/list?n=100&last=t0899", fast=True)


def test_tags_list_errors_and_unusual_requests_go_to_flask(open_registry: Harness) -> None:
    h = open_registry
    h.image("fast/err", "v1")
    path = "/v2/fast/err/tags/list"
    h.both("GET", "/v2/fast/unknown/tags/list", fast=False, status=404)  # NAME_UNKNOWN
    assert b"NAME_UNKNOWN" in h.both("GET", "/v2/fast/unknown/tags/list?n=1", fast=False,
                                     status=404)["body"]
    h.both("GET", "/v2/Fast/Upper/tags/list", fast=False, status=400)
    h.both("GET", "/v2//tags/list", fast=False, status=308)  # merged slashes
    h.both("GET", "/v2/tags/list", fast=False, status=404)
    h.both("GET", "/v2/fast//err/tags/list", fast=False, status=400)
    for bad in ("x", "-1", "1.5", "²", "%C2%B2", "1%20"):
        h.both("GET", f"{path}?n={bad}", fast=False, status=400)
    # Queries Flask reads its own way: escapes, '+', repeats, keys without '=', others
    # (``ns`` picks a mirror upstream: none here, Flask's NAME_UNKNOWN).
    for query in ("?n=%32", "?last=b%31", "?last=a+b", "?n=1&n=2", "?n", "?n=1&", "?x=1",
                  "?last=%E2%82%AC"):
        h.both("GET", path + query, fast=False)
    h.both("GET", path + "?n=1;last=a", fast=False, status=400)  # one value: "1;last=a"
    h.both("GET", path + "?ns=docker.io", fast=False, status=404)
    h.both("HEAD", path, fast=False, status=405)
    h.both("GET", path, {"Cookie": "a=b"}, fast=False)
    h.both("GET", path, {"If-None-Match": '"x"'}, fast=False)
    h.both("GET", path + "/", fast=False, status=404)
    # A repository named .../manifests: Flask's dispatch reads its list as a tags list
    # too (not a manifest); unknown first, then pushed.
    h.both("GET", "/v2/fast/manifests/tags/list", fast=False, status=404)
    h.image("fast/manifests", "v1")
    h.both("GET", "/v2/fast/manifests/tags/list", fast=True)
    h.image("fast/blobs", "v1")
    h.both("GET", "/v2/fast/blobs/tags/list", fast=True)


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_tags_list_with_auth(tmp_path: Path, mode: str) -> None:
    h = Harness(tmp_path, mode)
    if mode == "basic":
        h.image("team-a/app", "v1", user="alice")
        h.image("public/app", "v1", user="carol")
        alice, carol = _basic("alice"), _basic("carol")
    else:
        for repo, user in (("team-a/app", "alice"), ("public/app", "carol")):
            tok = _token(h, user, f"repository:{repo}:pull,push")
            _push_with_token(h, repo, tok)
        alice = {"Authorization": f"Bearer {_token(h, 'alice', 'repository:team-a/app:pull')}"}
        carol = {"Authorization": f"Bearer {_token(h, 'carol', 'repository:public/app:pull')}"}
    team, public = "/v2/team-a/app/tags/list", "/v2/public/app/tags/list"
    h.both("GET", public, fast=True)  # anonymous pulls of public/**
    h.both("GET", public + "?n=1", fast=True)
    h.both("GET", team, fast=False, status=401)
    answer = h.both("GET", team, alice, fast=True)
    assert answer["log"][1]["user"] == "alice"
    h.both("GET", team + "?n=0", alice, fast=True)
    h.both("GET", public, carol, fast=True)
    h.both("GET", team, carol, fast=False, status=403)
    h.both("GET", "/v2/team-a/unknown/tags/list", alice, fast=False,
           status=404 if mode == "basic" else 401)
    if mode == "basic":
        h.both("GET", team, _basic("alice", "wrong"), fast=False, status=401)


def _push_with_token(h: Harness, repo: str, tok: str) -> None:
    config = json.dumps({"os": "linux"}).encode()
    r = h.client.post(f"/v2/{repo}/blobs/uploads/?digest={_digest(config)}", data=config,
                      headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 201, r.get_data()
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                       "config": {"mediaType": OCI_CONFIG, "digest": _digest(config),
                                  "size": len(config)}}).encode()
    r = h.client.put(f"/v2/{repo}/manifests/v1", data=body, headers={
        "Content-Type": OCI_MANIFEST, "Authorization": f"Bearer {tok}"})
    assert r.status_code == 201, r.get_data()


def test_robots_go_to_flask(tmp_path: Path) -> None:
    rules = [*RULES, {"groups": ["robots"], "repositories": ["**"], "actions": ["pull"]}]
    h = Harness(tmp_path, "basic", auth={"rules": rules})
    h.image("team-a/app", "v1", user="alice")
    _, secret = h.app.extensions["ociregistry.auth"].robots.create(
        "ci", parse_scope(["team-a/**:pull"]))
    raw = base64.b64encode(f"robot$ci:{secret}".encode()).decode()
    robot = {"Authorization": f"Basic {raw}"}
    h.both("GET", "/v2/team-a/app/tags/list", robot, fast=False)
    h.both("GET", "/v2/", robot, fast=False)


def test_switched_off_rate_limited_and_mirrored(tmp_path: Path) -> None:
    off = Harness(tmp_path / "off", None, http={"fast_reads": False})
    off.image("fast/off", "v1")
    off.both("GET", "/v2/", fast=False)
    off.both("GET", "/v2/fast/off/tags/list", fast=False)
    limited = Harness(tmp_path / "limited", None, rate_limit={"per_address": 1000})
    limited.image("fast/limited", "v1")
    limited.both("GET", "/v2/", fast=False)
    limited.both("GET", "/v2/fast/limited/tags/list", fast=False)
    upstream = {"name": "hub", "url": "http://127.0.0.1:9"}  # nothing listens there
    mirrored = Harness(tmp_path / "mirror", None, mirror={"upstreams": [upstream]})
    mirrored.image("fast/local", "v1")
    mirrored.both("GET", "/v2/", fast=True)
    mirrored.both("GET", "/v2/fast/local/tags/list", fast=True)
    assert mirrored._once(True, "GET", "/v2/hub/library/alpine/tags/list", {})["flask"]
    assert mirrored._once(True, "GET", "/v2/fast/local/tags/list?ns=docker.io", {})["flask"]
