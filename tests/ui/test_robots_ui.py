"""The robot accounts page: admins only, CSRF-checked; create shows the token once,
revoke takes effect at once. In-process first, then in headless Chromium."""

from __future__ import annotations

import re

import requests
from playwright.sync_api import expect

from tests.ui.conftest import PASSWORDS, csrf_of, sign_in
from tests.ui.test_browser import TIMEOUT_MS, browser, secured_registry  # noqa: F401

TOKEN_RE = re.compile(r"ocr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def test_only_admins_see_the_page(auth_app):
    app, _ = auth_app
    c = app.test_client()
    r = c.get("/ui/robots")
    assert r.status_code == 302 and "/ui/login" in r.headers["Location"]
    sign_in(c, "alice")
    assert c.get("/ui/robots").status_code == 403
    r = c.post("/ui/robots", data={"name": "x", "scope": "**:pull", "expires": "7d",
                                   "csrf_token": csrf_of(c, "/ui/")})
    assert r.status_code == 403
    assert "Robot accounts" not in c.get("/ui/").get_data(as_text=True)


def test_create_shows_the_token_once_and_revoke_stops_it(auth_app):
    app, runtime = auth_app
    c = app.test_client()
    sign_in(c, "admin")
    assert c.get("/ui/robots").status_code == 200
    # No CSRF token: refused.
    assert c.post("/ui/robots", data={"name": "ci", "scope": "**:pull"}).status_code == 403
    csrf = csrf_of(c, "/ui/robots")
    r = c.post("/ui/robots", data={"name": "ci", "scope": "bad scope", "expires": "7d",
                                   "csrf_token": csrf})
    assert r.status_code == 400 and "scope" in r.get_data(as_text=True)
    r = c.post("/ui/robots", data={"name": "ci", "scope": "team/**:pull", "expires": "30d",
                                   "description": "nightly", "csrf_token": csrf})
    html = r.get_data(as_text=True)
    assert r.status_code == 201
    token = TOKEN_RE.search(html).group(0)
    assert "robot$ci" in html and "nightly" in html
    # Never again: not in the listing, not in the session cookie.
    listing = c.get("/ui/robots").get_data(as_text=True)
    assert token not in listing and token.split("_")[1] in listing
    assert token not in (r.headers.get("Set-Cookie") or "")
    api = app.test_client()
    robot = ("robot$ci", token)
    assert api.get("/v2/", auth=robot).status_code == 200

    token_id = token.split("_")[1]
    r = c.post(f"/ui/robots/{token_id}/revoke", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert api.get("/v2/", auth=robot).status_code == 401
    assert "No live tokens" in c.get("/ui/robots").get_data(as_text=True)
    assert "revoked" in c.get("/ui/robots?all=1").get_data(as_text=True)


def test_without_authentication_the_page_says_robots_need_it(client):
    r = client.get("/ui/robots")
    assert r.status_code == 200 and "need authentication" in r.get_data(as_text=True)


def test_create_list_and_revoke_in_a_browser(browser, secured_registry):  # noqa: F811
    registry = secured_registry
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(registry.url + "/ui/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORDS["admin"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as admin.")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Robot accounts").click()
    expect(page.get_by_role("heading", name="Robot accounts")).to_be_visible()
    page.get_by_label("Robot name").fill("deployer")
    page.get_by_label("Scope").fill("team/**:pull")
    page.get_by_label("Expires after").select_option("7d")
    page.get_by_label("Description").fill("from the browser")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token-user")).to_have_text("robot$deployer")
    token = page.locator("#new-token-value").inner_text().strip()
    assert TOKEN_RE.fullmatch(token), token
    row = page.locator("#robot-tokens tbody tr", has_text="robot$deployer")
    expect(row).to_have_count(1)
    expect(row.locator(".token-state")).to_have_text("active")
    expect(row).to_contain_text("team/**:pull")

    robot = ("robot$deployer", token)
    assert requests.get(registry.url + "/v2/", auth=robot, timeout=30).status_code == 200
    page.goto(registry.url + "/ui/robots")  # the token is not shown again
    expect(page.locator("#new-token-value")).to_have_count(0)
    assert token not in page.content()

    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text(re.compile(r"Token [0-9a-f]{12} revoked"))).to_be_visible()
    expect(page.locator("#robot-tokens tbody tr", has_text="robot$deployer")).to_have_count(0)
    assert requests.get(registry.url + "/v2/", auth=robot, timeout=30).status_code == 401
