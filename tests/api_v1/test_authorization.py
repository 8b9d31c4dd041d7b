"""Every operation of the OpenAPI document, as every kind of caller.

The table comes from the document itself (each operation's ``x-permission``),
so an endpoint added later is covered without editing this file: a refused
caller must get 401 (anonymous) or 403, an allowed one anything but those and
never a 5xx. Repository operations target team/app; deletes name things that
do not exist, so an allowed delete answers 404 and the content stays.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from tests.api_v1.conftest import Live

ROLES = ("anonymous", "puller", "pusher", "robot", "admin")
# Who may do what on team/app (conftest.RULES; the robot: team/app:pull).
ALLOWED = {
    "public": set(ROLES),
    "list": set(ROLES),
    "repository:pull": {"puller", "pusher", "robot", "admin"},
    "repository:push": {"pusher", "admin"},
    "repository:delete": {"pusher", "admin"},
    "admin": {"admin"},
}
MISSING_DIGEST = "sha256:" + "0" * 64


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(method.upper(), path, op["x-permission"])
            for path, item in doc["paths"].items() for method, op in item.items()]


def _fill(path: str, method: str, live: Live) -> str:
    values = {"name": "team/app", "tag": "v1.0" if method == "GET" else "no-such-tag",
              "digest": live.digests["team/app:v1.0"] if method == "GET" else MISSING_DIGEST}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], "no-such-thing"), path)


@pytest.fixture(scope="module")
def document(live: Live, http: requests.Session) -> dict[str, Any]:
    r = http.get(live.url + "/api/v1/openapi.json", timeout=60)
    assert r.status_code == 200
    return r.json()


def test_every_operation_declares_a_known_permission(document):
    operations = _operations(document)
    assert len(operations) >= 8
    for method, path, permission in operations:
        assert permission in ALLOWED, (method, path)


@pytest.mark.parametrize("role", ROLES)
def test_each_caller_gets_exactly_what_the_rules_allow(live, http, document, role):
    failures = []
    for method, path, permission in _operations(document):
        params = {"q": "app"} if path.endswith("/search") else {}
        r = http.request(method, live.url + _fill(path, method, live), params=params,
                         auth=live.auth(role), timeout=60)
        allowed = role in ALLOWED[permission]
        if allowed:
            ok = r.status_code not in (401, 403) and r.status_code < 500
        else:
            ok = r.status_code == (401 if role == "anonymous" else 403)
            ok = ok and r.headers["Content-Type"] == "application/problem+json"
        if not ok:
            failures.append((method, path, r.status_code, r.text[:200]))
    assert failures == []


def test_an_allowed_delete_of_a_missing_tag_is_a_404_problem(live, http):
    r = http.delete(live.url + "/api/v1/repositories/team/app/tags/no-such-tag",
                    auth=live.auth("pusher"), timeout=60)
    assert r.status_code == 404 and r.json()["code"] == "tag_not_found"


@pytest.mark.parametrize(("role", "expected"), [
    ("anonymous", {"public/base"}),
    ("puller", {"team/app", "team/other"}),  # the anonymous rule is for anonymous only
    ("robot", {"team/app"}),
    ("admin", {"public/base", "team/app", "team/other", "secret/thing"}),
])
def test_listings_show_only_what_the_caller_may_pull(live, http, role, expected):
    r = http.get(live.url + "/api/v1/repositories", auth=live.auth(role), timeout=60)
    assert r.status_code == 200, r.text
    assert {item["name"] for item in r.json()["items"]} == expected
    r = http.get(live.url + "/api/v1/search", params={"q": "t"}, auth=live.auth(role),
                 timeout=60)
    assert {hit["repository"] for hit in r.json()["items"]} <= expected
    r = http.get(live.url + "/api/v1/namespaces/team/usage", auth=live.auth(role), timeout=60)
    visible_team = {n for n in expected if n.startswith("team/")}
    assert r.json()["repositories"] == len(visible_team)


def test_wrong_credentials_are_a_401_problem(live, http):
    r = http.get(live.url + "/api/v1/repositories", auth=("puller", "wrong"), timeout=60)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert r.headers["Content-Type"] == "application/problem+json"


def _ui_session(live: Live, user: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    session.trust_env = False
    html = session.get(live.url + "/ui/login", timeout=60).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)[1]
    r = session.post(live.url + "/ui/login", allow_redirects=False, timeout=60,
                     data={"username": user, "password": "pusher-pw", "csrf_token": token,
                           "next": "/ui/"})
    assert r.status_code == 303, r.text[:500]
    html = session.get(live.url + "/ui/", timeout=60).text
    return session, re.search(r'name="csrf_token" value="([^"]+)"', html)[1]


def test_the_ui_session_works_and_needs_its_csrf_token_to_change_anything(live):
    session, token = _ui_session(live, "pusher")
    r = session.get(live.url + "/api/v1/repositories/team/app/tags", timeout=60)
    assert r.status_code == 200, r.text
    url = live.url + "/api/v1/repositories/team/app/tags/no-such-tag"
    r = session.delete(url, timeout=60)
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = session.delete(url, headers={"X-CSRF-Token": "forged"}, timeout=60)
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = session.delete(url, headers={"X-CSRF-Token": token}, timeout=60)
    assert r.status_code == 404 and r.json()["code"] == "tag_not_found"
