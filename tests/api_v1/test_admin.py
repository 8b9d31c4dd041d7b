"""/api/v1/admin on a live registry (real gunicorn, two workers): admins only, and each
operation doing what it says (users, groups, robot tokens, garbage collection)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests

from tests.api_v1.conftest import Live

ADMIN = ("admin", "admin-pw")
PROBLEM = "application/problem+json"


def api(live: Live, http: requests.Session, method: str, path: str, who: Any = ADMIN,
        **kwargs: Any) -> requests.Response:
    return http.request(method, live.url + "/api/v1" + path, auth=who, timeout=60, **kwargs)


def eventually(check, seconds: float = 30):  # noqa: ANN001, ANN201
    """Other workers re-read the htpasswd file within a second: poll, generously."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def v2_status(live: Live, http: requests.Session, who: tuple[str, str]) -> int:
    return http.get(live.url + "/v2/team/app/tags/list", auth=who, timeout=60).status_code


@pytest.mark.parametrize(("who", "status"), [
    ("anonymous", 401), ("puller", 403), ("pusher", 403), ("robot", 403)])
def test_only_admins_reach_the_admin_api(live, http, who, status):
    for method, path, body in (("GET", "/admin/users", None), ("GET", "/admin/groups", None),
                               ("GET", "/admin/robots/tokens", None),
                               ("POST", "/admin/users", {"name": "x", "password": "y"}),
                               ("POST", "/admin/gc", {"dry_run": True}),
                               ("GET", "/admin/gc/runs", None)):
        r = api(live, http, method, path, live.auth(who), json=body)
        assert r.status_code == status, (method, path, r.text)
        assert r.headers["Content-Type"] == PROBLEM
        assert r.json()["code"] == ("unauthorized" if status == 401 else "forbidden")
    assert "carol-x" not in str(api(live, http, "GET", "/admin/users").json())


def test_users_created_repassworded_and_deleted(live, http):
    r = api(live, http, "POST", "/admin/users", json={"name": "carol", "password": "one"})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "carol", "groups": [], "admin": False}
    assert eventually(lambda: v2_status(live, http, ("carol", "one")) == 403)  # known, no rule
    names = [u["name"] for u in api(live, http, "GET", "/admin/users").json()["items"]]
    assert {"admin", "puller", "pusher", "carol"} <= set(names)
    assert api(live, http, "GET", "/admin/users/admin").json()["admin"] is True
    r = api(live, http, "POST", "/admin/users", json={"name": "carol", "password": "two"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    for bad in ({"name": "a b", "password": "x"}, {"name": "dave", "password": ""},
                {"name": "dave"}, {"name": "dave", "password": 5},
                {"name": "dave", "password": "x", "admin": True}, ["dave"]):
        r = api(live, http, "POST", "/admin/users", json=bad)
        assert r.status_code == 400 and r.headers["Content-Type"] == PROBLEM, (bad, r.text)
    r = api(live, http, "POST", "/admin/users", data="name=dave",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
    r = api(live, http, "POST", "/admin/users", data="{not json",
            headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "bad_request"

    session = ui_login(live, "carol", "one")
    assert "carol" in session.get(live.url + "/ui/", timeout=60).text  # signed in
    r = api(live, http, "PUT", "/admin/users/carol/password", json={"password": "two"})
    assert r.status_code == 200 and r.json()["user"] == "carol"
    assert r.json()["sessions_ended"] >= 1
    assert "carol" not in session.get(live.url + "/ui/", timeout=60).text  # session ended
    assert eventually(lambda: v2_status(live, http, ("carol", "one")) == 401)
    assert v2_status(live, http, ("carol", "two")) == 403
    r = api(live, http, "PUT", "/admin/users/nobody/password", json={"password": "x"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"

    r = api(live, http, "DELETE", "/admin/users/carol")
    assert r.status_code == 200 and r.json()["user"] == "carol"
    assert eventually(lambda: v2_status(live, http, ("carol", "two")) == 401)
    assert api(live, http, "GET", "/admin/users/carol").status_code == 404
    assert api(live, http, "DELETE", "/admin/users/carol").status_code == 404


def ui_login(live: Live, user: str, password: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    html = session.get(live.url + "/ui/login", timeout=60).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)[1]

    def attempt() -> bool:
        r = session.post(live.url + "/ui/login", allow_redirects=False, timeout=60,
                         data={"username": user, "password": password, "csrf_token": token,
                               "next": "/ui/"})
        return r.status_code == 303

    assert eventually(attempt)
    return session


def test_groups_are_listed_read_only(live, http):
    r = api(live, http, "GET", "/admin/groups")
    assert r.status_code == 200
    assert all(g["read_only"] is True for g in r.json()["items"])
    assert r.json()["items"] == []  # conftest configures no auth.groups
    assert api(live, http, "POST", "/admin/groups").status_code == 405


def test_robot_tokens_created_once_used_and_revoked(live, http):
    r = api(live, http, "POST", "/admin/robots/tokens",
            json={"robot": "deploy", "scope": ["team/app:pull"], "expires": "1d",
                  "description": "from the API test"})
    assert r.status_code == 201, r.text
    created = r.json()
    token, token_id = created["token"], created["id"]
    assert created["user"] == "robot$deploy" and created["created_by"] == "api:admin"
    assert v2_status(live, http, ("robot$deploy", token)) == 200
    listed = api(live, http, "GET", "/admin/robots/tokens", params={"robot": "deploy"}).json()
    assert [t["id"] for t in listed["items"]] == [token_id]
    assert token not in str(listed) and "secret" not in str(listed)
    robots = {r["name"]: r for r in api(live, http, "GET", "/admin/robots").json()["items"]}
    assert robots["deploy"]["active_tokens"] == 1
    for bad in ({"robot": "deploy", "scope": ["team/app"]},
                {"robot": "deploy", "scope": ["team/app:pull"], "expires": "never"},
                {"robot": "Deploy!", "scope": ["team/app:pull"]},
                {"robot": "deploy", "scope": []}):
        r = api(live, http, "POST", "/admin/robots/tokens", json=bad)
        assert r.status_code == 400 and r.headers["Content-Type"] == PROBLEM, (bad, r.text)
    # a robot, even with a token, is never an admin
    r = api(live, http, "GET", "/admin/robots/tokens", ("robot$deploy", token))
    assert r.status_code == 403
    assert api(live, http, "DELETE", f"/admin/robots/tokens/{token_id}").status_code == 204
    assert v2_status(live, http, ("robot$deploy", token)) == 401
    assert api(live, http, "DELETE", f"/admin/robots/tokens/{token_id}").status_code == 404
    revoked = api(live, http, "GET", "/admin/robots/tokens",
                  params={"robot": "deploy", "include-revoked": "true"}).json()["items"]
    assert [t["state"] for t in revoked] == ["revoked"]
    assert api(live, http, "DELETE", "/admin/robots/deploy/tokens").status_code == 404
    second = api(live, http, "POST", "/admin/robots/tokens",
                 json={"robot": "deploy", "scope": ["team/app:pull"], "expires": "1d"}
                 ).json()["token"]
    r = api(live, http, "DELETE", "/admin/robots/deploy/tokens")
    assert r.status_code == 200 and len(r.json()["revoked"]) == 1
    assert v2_status(live, http, ("robot$deploy", second)) == 401


def wait_gc(live: Live, http: requests.Session) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = api(live, http, "GET", "/admin/gc").json()
        if not status["running"]:
            return status
        time.sleep(0.1)
    raise AssertionError("the collection did not finish")


def test_gc_dry_run_real_run_progress_and_history(live, http):
    wait_gc(live, http)
    before = api(live, http, "GET", "/admin/gc/runs").json()["items"]
    r = api(live, http, "POST", "/admin/gc", json={"dry_run": True})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert r.json()["dry_run"] is True and r.json()["started_by"] == "admin"
    done = wait_gc(live, http)
    assert done["job"] == job and done["state"] == "finished", done
    assert done["result"]["dry_run"] is True
    assert api(live, http, "GET", f"/admin/gc/jobs/{job}").json()["state"] == "finished"
    assert api(live, http, "GET", "/admin/gc/runs").json()["items"] == before  # dry: no row
    r = api(live, http, "POST", "/admin/gc", json={"dry_run": False})
    assert r.status_code == 202
    assert wait_gc(live, http)["state"] == "finished"
    runs = api(live, http, "GET", "/admin/gc/runs", params={"limit": 1}).json()
    assert len(runs["items"]) == 1 and runs["items"][0]["dry_run"] is False
    assert len(before) + 1 == len(api(live, http, "GET", "/admin/gc/runs").json()["items"])
    assert api(live, http, "GET", "/admin/gc/jobs/no-such-job").status_code == 404
    assert api(live, http, "POST", "/admin/gc", json={}).status_code == 400
    # content younger than the grace period is all still there
    assert v2_status(live, http, ("pusher", "pusher-pw")) == 200


def test_gc_is_refused_while_one_runs(live, http):
    """The lock row is what every instance checks: hold it as a CLI run would."""
    from ociregistry.metadata.store import MetadataStore

    wait_gc(live, http)
    store = MetadataStore(f"sqlite:///{live.data_dir / 'registry.db'}")
    try:
        assert store.try_lock("gc", "test-holder", ttl=120)
        r = api(live, http, "POST", "/admin/gc", json={"dry_run": True})
        assert r.status_code == 409 and r.json()["code"] == "conflict"
        assert api(live, http, "GET", "/admin/gc").json()["elsewhere"] is True
    finally:
        store.unlock("gc", "test-holder")
        store.dispose()


def test_the_openapi_document_declares_the_admin_operations(live, http):
    doc = http.get(live.url + "/api/v1/openapi.json", timeout=60).json()
    admin = {(m.upper(), p) for p, item in doc["paths"].items() for m, op in item.items()
             if op["x-permission"] == "admin"}
    assert {("GET", "/api/v1/admin/users"), ("POST", "/api/v1/admin/users"),
            ("PUT", "/api/v1/admin/users/{user}/password"),
            ("DELETE", "/api/v1/admin/users/{user}"), ("GET", "/api/v1/admin/groups"),
            ("GET", "/api/v1/admin/robots"), ("POST", "/api/v1/admin/robots/tokens"),
            ("DELETE", "/api/v1/admin/robots/tokens/{token_id}"),
            ("POST", "/api/v1/admin/gc"), ("GET", "/api/v1/admin/gc/runs")} <= admin
    create = doc["paths"]["/api/v1/admin/users"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["required"] == \
        ["name", "password"]
