"""The events page: admins only, CSRF-checked; add an endpoint (secret shown once),
send a test event, disable and enable, read the delivery log. In-process first,
then in headless Chromium against a real registry and a real receiver."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.events.receivers import Receiver, verify
from tests.ui.conftest import PASSWORDS, csrf_of, sign_in
from tests.ui.test_browser import TIMEOUT_MS, browser, secured_registry  # noqa: F401


def test_only_admins_see_the_page(auth_app):
    app, _ = auth_app
    c = app.test_client()
    r = c.get("/ui/events")
    assert r.status_code == 302 and "/ui/login" in r.headers["Location"]
    sign_in(c, "alice")
    assert c.get("/ui/events").status_code == 403
    r = c.post("/ui/events", data={"name": "x", "url": "http://127.0.0.1:9/",
                                   "csrf_token": csrf_of(c, "/ui/")})
    assert r.status_code == 403
    assert ">Events<" not in c.get("/ui/").get_data(as_text=True)


def test_add_with_bad_input_and_without_csrf(auth_app):
    app, _ = auth_app
    c = app.test_client()
    sign_in(c, "admin")
    assert ">Events<" in c.get("/ui/").get_data(as_text=True)
    assert c.post("/ui/events", data={"name": "x", "url": "http://127.0.0.1:9/"}
                  ).status_code == 403
    csrf = csrf_of(c, "/ui/events")
    r = c.post("/ui/events", data={"name": "x", "url": "gopher://nope", "csrf_token": csrf})
    assert r.status_code == 400 and "url" in r.get_data(as_text=True)
    r = c.post("/ui/events", data={"name": "x", "url": "http://127.0.0.1:9/",
                                   "batch_max_events": "lots", "csrf_token": csrf})
    assert r.status_code == 400 and "batch_max_events" in r.get_data(as_text=True)
    r = c.post("/ui/events", data={"name": "x", "url": "http://127.0.0.1:9/",
                                   "batch_max_events": "5000", "csrf_token": csrf})
    assert r.status_code == 400 and "batch_max_events" in r.get_data(as_text=True)
    r = c.post("/ui/events/nope/explode", data={"csrf_token": csrf})
    assert r.status_code == 404
    r = c.post("/ui/events", data={"name": "ok", "url": "http://127.0.0.1:9/hook",
                                   "actions": "manifest.* tag.*", "csrf_token": csrf})
    html = r.get_data(as_text=True)
    assert r.status_code == 201 and 'id="new-endpoint-secret"' in html
    assert "manifest.* tag.*" in html
    r = c.post("/ui/events", data={"name": "ok", "url": "http://127.0.0.1:9/hook",
                                   "csrf_token": csrf})
    assert r.status_code == 409 and "exists" in r.get_data(as_text=True)


def test_manage_an_endpoint_in_a_browser(browser, secured_registry):  # noqa: F811
    registry = secured_registry
    receiver = Receiver()
    try:
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page.goto(registry.url + "/ui/login")
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(PASSWORDS["admin"])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as admin.")).to_be_visible()

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Events").click()
        expect(page.get_by_role("heading", name="Events", exact=True)).to_be_visible()
        page.get_by_label("Name").fill("browser-hook")
        page.get_by_label("URL").fill(receiver.url)
        page.get_by_label("Format").select_option("cloudevents")
        page.get_by_label("Repositories").fill("e2e/**")
        page.get_by_label("Events per request").fill("1")  # no batches: single CloudEvents
        page.get_by_role("button", name="Add endpoint").click()
        secret = page.locator("#new-endpoint-secret").inner_text().strip()
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/=]{32}", secret), secret
        row = page.locator("#event-endpoints tbody tr[data-endpoint='browser-hook']")
        expect(row.locator(".endpoint-state")).to_contain_text("enabled")
        expect(row.locator(".endpoint-batch")).to_have_text("one event per request")

        row.get_by_role("button", name="Send test").click()
        expect(page.get_by_text(re.compile(r"Test event delivered to browser-hook: 204"))
               ).to_be_visible()
        request = receiver.requests[-1]
        assert verify(secret, request["headers"], request["body"])
        assert request["headers"]["content-type"] == "application/cloudevents+json"
        expect(page.locator("#delivery-log .delivery-outcome").first).to_have_text("test")

        page.goto(registry.url + "/ui/events")  # the secret is not shown again
        assert secret not in page.content()
        row = page.locator("#event-endpoints tbody tr[data-endpoint='browser-hook']")
        row.get_by_role("button", name="Disable").click()
        expect(row.locator(".endpoint-state")).to_contain_text("disabled by an admin")
        row.get_by_role("button", name="Enable").click()
        expect(row.locator(".endpoint-state")).to_contain_text("enabled")
        row.get_by_role("button", name="Delete").click()
        expect(page.get_by_text("browser-hook deleted.")).to_be_visible()
        expect(page.locator("#event-endpoints tbody tr[data-endpoint='browser-hook']")
               ).to_have_count(0)
    finally:
        receiver.stop()
