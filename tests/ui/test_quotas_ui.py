"""The quotas page: admins only, CSRF-checked; a usage bar per namespace that follows
pushes; create, change and delete. In-process first, then in headless Chromium."""

from __future__ import annotations

import hashlib
import os

import requests
from playwright.sync_api import expect

from tests.ui.conftest import PASSWORDS, csrf_of, sign_in
from tests.ui.test_browser import TIMEOUT_MS, browser, secured_registry  # noqa: F401


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_only_admins_see_the_page(auth_app):
    app, _ = auth_app
    c = app.test_client()
    r = c.get("/ui/quotas")
    assert r.status_code == 302 and "/ui/login" in r.headers["Location"]
    sign_in(c, "alice")
    assert c.get("/ui/quotas").status_code == 403
    r = c.post("/ui/quotas", data={"namespace": "team/**", "limit": "1GiB",
                                   "csrf_token": csrf_of(c, "/ui/")})
    assert r.status_code == 403
    assert ">Quotas<" not in c.get("/ui/").get_data(as_text=True)


def test_create_show_change_and_delete(auth_app):
    app, runtime = auth_app
    c = app.test_client()
    sign_in(c, "admin")
    assert "No quotas" in c.get("/ui/quotas").get_data(as_text=True)
    assert c.post("/ui/quotas", data={"namespace": "team/**", "limit": "1KB"}).status_code \
        == 403  # no CSRF token
    csrf = csrf_of(c, "/ui/quotas")
    r = c.post("/ui/quotas", data={"namespace": "team/**", "limit": "lots",
                                   "csrf_token": csrf})
    assert r.status_code == 400 and "not a size" in r.get_data(as_text=True)
    data = os.urandom(1500)
    runtime.registry.uploads.monolithic("team/app", _digest(data), iter([data]))
    r = c.post("/ui/quotas", data={"namespace": "team/**", "limit": "2KB",
                                   "warning": "50%", "csrf_token": csrf})
    assert r.status_code == 303
    page = c.get("/ui/quotas").get_data(as_text=True)
    assert 'value="1500"' in page and 'max="2000"' in page and 'high="1000"' in page
    assert "75.0%" in page and "quota-warning" in page
    r = c.post("/ui/quotas", data={"namespace": "team/**", "limit": "2KB",
                                   "csrf_token": csrf})
    assert r.status_code == 409 and "exists already" in r.get_data(as_text=True)
    quota_id = runtime.quotas.list()[0].id
    r = c.post(f"/ui/quotas/{quota_id}", data={"limit": "1500", "warning": "",
                                                "csrf_token": csrf})
    assert r.status_code == 303
    page = c.get("/ui/quotas").get_data(as_text=True)
    assert "100.0%" in page and "quota-full" in page
    assert c.post(f"/ui/quotas/{quota_id}/delete", data={"csrf_token": csrf}).status_code \
        == 303
    assert runtime.quotas.list() == []


def test_usage_bars_in_a_browser(browser, secured_registry):  # noqa: F811
    registry = secured_registry
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(registry.url + "/ui/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORDS["admin"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as admin.")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Quotas").click()
    expect(page.get_by_role("heading", name="Quotas", exact=True)).to_be_visible()
    page.locator("#quota-namespace").fill("team/**")
    page.locator("#quota-limit").fill("10KB")
    page.locator("#quota-warning").fill("80%")
    page.get_by_role("button", name="Create quota").click()
    expect(page.get_by_text("Quota on team/** created")).to_be_visible()
    row = page.locator("#quotas tbody tr[data-namespace='team/**']")
    expect(row.locator("meter")).to_have_attribute("value", "0")
    expect(row.locator("meter")).to_have_attribute("max", "10000")

    alice = ("alice", PASSWORDS["alice"])
    data = os.urandom(8500)
    r = requests.post(f"{registry.url}/v2/team/app/blobs/uploads/", auth=alice,
                      params={"digest": _digest(data)}, data=data, timeout=60)
    assert r.status_code == 201, r.text
    r = requests.post(f"{registry.url}/v2/team/app/blobs/uploads/", auth=alice,
                      params={"digest": _digest(data[:2000])}, data=data[:2000], timeout=60)
    assert r.status_code == 403 and "quota exceeded for namespace team/**" in r.text
    page.reload()
    expect(row.locator("meter")).to_have_attribute("value", "8500")
    expect(row.locator(".quota-percent")).to_have_text("85.0%")
    expect(row).to_have_class("quota-warning")

    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Quota deleted.")).to_be_visible()
    expect(page.locator("#quotas")).to_have_count(0)
