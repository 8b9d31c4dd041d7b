"""Sign-in, sessions, CSRF and permissions, with the registry's own users and rules."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from ociregistry.web.ui import access
from tests.ui import seed
from tests.ui.conftest import PASSWORDS, basic, csrf_of, sign_in


@pytest.fixture
def auth_client(auth_app) -> FlaskClient:
    app, _runtime = auth_app
    client = app.test_client()
    admin = basic("admin")
    seed.image(client, "team/app", "1.0", headers=admin)
    seed.image(client, "team/other", "2.0", headers=admin)
    seed.image(client, "public/tool", "latest", headers=admin)
    seed.image(client, "secret/db", "9", headers=admin)
    return client


def repo_names(html: str) -> list[str]:
    return re.findall(r'class="repo-name" href="/ui/r/([^"]+)"', html)


def test_anonymous_sees_only_what_anonymous_may_pull(auth_client):
    html = auth_client.get("/ui/repositories").get_data(as_text=True)
    assert repo_names(html) == ["public/tool"]
    overview = auth_client.get("/ui/").get_data(as_text=True)
    assert "Storage used" not in overview and "Garbage collection" not in overview
    assert "public/tool" in overview and "team/app" not in overview and "secret" not in overview
    assert "Sign in</a>" in overview
    assert auth_client.get("/ui/r/public/tool").status_code == 200
    assert "/-/delete" not in auth_client.get("/ui/r/public/tool").get_data(as_text=True)
    # a repository anonymous may not see: sign in first
    r = auth_client.get("/ui/r/team/app/-/tag/1.0")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/ui/login?next=")
    assert auth_client.get("/ui/gc").status_code == 302
    assert auth_client.get("/ui/gc/status").status_code == 403


def test_sign_in_with_the_registry_users(auth_client):
    page = auth_client.get("/ui/login?next=/ui/r/team/app").get_data(as_text=True)
    assert 'autocomplete="current-password"' in page
    token = csrf_of(auth_client)
    wrong = auth_client.post("/ui/login", data={"username": "alice", "password": "nope",
                                                "csrf_token": token})
    assert wrong.status_code == 401
    assert "Wrong user name or password." in wrong.get_data(as_text=True)
    assert access.SESSION_LIFETIME > 0
    r = auth_client.post("/ui/login", data={"username": "alice", "password": PASSWORDS["alice"],
                                            "csrf_token": token, "next": "/ui/r/team/app"})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/r/team/app"
    cookie = r.headers["Set-Cookie"]
    assert "ociregistry_ui=" in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/;" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    html = auth_client.get("/ui/r/team/app").get_data(as_text=True)
    assert "Signed in as alice." in html and ">alice</span>" in html


def test_session_cookie_is_secure_under_https(auth_app):
    app, _runtime = auth_app
    client = app.test_client()
    page = client.get("/ui/login", base_url="https://registry.example")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    assert "Secure" in page.headers["Set-Cookie"]
    r = client.post("/ui/login", base_url="https://registry.example",
                    data={"username": "bob", "password": PASSWORDS["bob"], "csrf_token": token})
    assert r.status_code == 303
    assert "Secure" in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]


def test_sign_in_needs_the_csrf_token(auth_client):
    auth_client.get("/ui/login")
    r = auth_client.post("/ui/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    assert r.status_code == 403
    assert "team/app" not in auth_client.get("/ui/repositories").get_data(as_text=True)


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/v2/_catalog",
                                    "/ui/\\evil", "javascript:alert(1)"])
def test_sign_in_never_redirects_off_the_ui(auth_client, target):
    token = csrf_of(auth_client)
    r = auth_client.post("/ui/login", data={"username": "bob", "password": PASSWORDS["bob"],
                                            "csrf_token": token, "next": target})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/"


def test_users_see_and_do_what_the_rules_allow(auth_client):
    sign_in(auth_client, "bob")
    # rules for anonymous callers do not apply to signed-in users
    assert repo_names(auth_client.get("/ui/repositories").get_data(as_text=True)) == [
        "team/app", "team/other"]
    html = auth_client.get("/ui/r/team/app").get_data(as_text=True)
    assert "/-/delete" not in html  # bob may pull, not delete
    assert auth_client.get("/ui/r/secret/db").status_code == 404  # not even confirmed to exist
    assert auth_client.get("/ui/r/team/app/-/delete?tag=1.0").status_code == 403
    token = csrf_of(auth_client, "/ui/login")
    r = auth_client.post("/ui/r/team/app/-/delete", data={"tag": "1.0", "csrf_token": token})
    assert r.status_code == 403
    assert auth_client.get("/ui/gc").status_code == 403
    assert auth_client.post("/ui/gc", data={"csrf_token": token}).status_code == 403
    overview = auth_client.get("/ui/").get_data(as_text=True)
    assert "Storage used" not in overview and "secret/db" not in overview


def test_a_user_with_delete_may_delete(auth_client):
    sign_in(auth_client, "alice")
    html = auth_client.get("/ui/r/team/app").get_data(as_text=True)
    assert 'aria-label="Delete tag 1.0"' in html
    token = csrf_of(auth_client, "/ui/r/team/app/-/delete?tag=1.0")
    r = auth_client.post("/ui/r/team/app/-/delete", data={"tag": "1.0", "csrf_token": token})
    assert r.status_code == 303
    assert auth_client.head("/v2/team/app/manifests/1.0", headers=basic("admin")).status_code == 404
    assert auth_client.get("/ui/gc").status_code == 403  # alice is no admin


def test_admin_sees_everything_and_runs_gc(auth_client):
    sign_in(auth_client, "admin")
    assert repo_names(auth_client.get("/ui/repositories").get_data(as_text=True)) == [
        "public/tool", "secret/db", "team/app", "team/other"]
    overview = auth_client.get("/ui/").get_data(as_text=True)
    assert "Storage used" in overview and "secret/db" in overview
    token = csrf_of(auth_client, "/ui/gc")
    assert auth_client.post("/ui/gc", data={"csrf_token": token}).status_code == 303
    assert auth_client.get("/ui/gc/status").status_code == 200


def test_sign_out_ends_the_session(auth_client):
    sign_in(auth_client, "admin")
    token = csrf_of(auth_client, "/ui/gc")
    assert auth_client.post("/ui/logout", data={}).status_code == 403  # CSRF here too
    r = auth_client.post("/ui/logout", data={"csrf_token": token})
    assert r.status_code == 303
    assert auth_client.get("/ui/gc").status_code == 302
    assert repo_names(auth_client.get("/ui/repositories").get_data(as_text=True)) == [
        "public/tool"]


def test_a_password_change_ends_existing_sessions(auth_client):
    sign_in(auth_client, "alice")
    assert auth_client.get("/ui/r/team/app").status_code == 200
    service = auth_client.application.extensions["ociregistry.auth"]
    service.htpasswd.set_password("alice", "a-new-password", cost=4)
    r = auth_client.get("/ui/r/team/app")
    assert r.status_code == 302 and "/ui/login" in r.headers["Location"]


def test_a_removed_user_is_signed_out(auth_client):
    sign_in(auth_client, "bob")
    service = auth_client.application.extensions["ociregistry.auth"]
    service.htpasswd.remove("bob")
    assert auth_client.get("/ui/r/team/app").status_code == 302
