"""The retention page: admins only, CSRF-checked; create a policy, dry run, run now,
see the audit. In-process first, then in headless Chromium. Also: the tag listing
shows when a tag was last pulled."""

from __future__ import annotations

import json
import time

import requests
from playwright.sync_api import expect

from tests.lifecycle.support import push_image
from tests.ui.conftest import PASSWORDS, csrf_of, sign_in
from tests.ui.test_browser import TIMEOUT_MS, browser, secured_registry  # noqa: F401

POLICY = {"repositories": ["team/**"], "keep": [{"latest_pushed": 1}]}


def test_only_admins_see_the_page(auth_app):
    app, _ = auth_app
    c = app.test_client()
    r = c.get("/ui/retention")
    assert r.status_code == 302 and "/ui/login" in r.headers["Location"]
    sign_in(c, "alice")
    assert c.get("/ui/retention").status_code == 403
    r = c.post("/ui/retention/run", data={"policy": "", "csrf_token": csrf_of(c, "/ui/")})
    assert r.status_code == 403
    assert "Retention" not in c.get("/ui/").get_data(as_text=True)


def test_save_refuses_bad_policies_and_needs_csrf(auth_app):
    app, _ = auth_app
    c = app.test_client()
    sign_in(c, "admin")
    assert c.post("/ui/retention/policies", data={"name": "p", "definition": "{}"}
                  ).status_code == 403  # no CSRF token
    csrf = csrf_of(c, "/ui/retention")
    for bad in ("not json", "[]", json.dumps({"keep": []}), json.dumps(POLICY)[:-1]):
        r = c.post("/ui/retention/policies", data={"name": "p", "definition": bad,
                                                   "csrf_token": csrf})
        assert r.status_code == 400 and "Not a valid policy" in r.get_data(as_text=True)
    r = c.post("/ui/retention/policies", data={"name": "p", "definition": json.dumps(POLICY),
                                               "csrf_token": csrf})
    assert r.status_code == 303
    assert 'data-policy="p"' in c.get("/ui/retention").get_data(as_text=True)


def test_policy_dry_run_and_run_in_a_browser(browser, secured_registry):  # noqa: F811
    registry = secured_registry
    admin = ("admin", PASSWORDS["admin"])
    session = requests.Session()
    session.auth = admin
    old = _push(registry.url, session, "old")
    time.sleep(0.01)
    _push(registry.url, session, "new")
    # A pull of "new", counted and shown on the repository page.
    r = session.get(f"{registry.url}/v2/team/app/manifests/new",
                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(registry.url + "/ui/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORDS["admin"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as admin.")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Retention").click()
    expect(page.get_by_role("heading", name="Retention", exact=True)).to_be_visible()
    page.get_by_label("Name").fill("team-latest")
    page.get_by_label("Definition").fill(json.dumps(POLICY))
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_text("Policy team-latest saved.")).to_be_visible()
    row = page.locator('#retention-policies tr[data-policy="team-latest"]')
    expect(row).to_contain_text("latest_pushed 1")

    row.get_by_role("button", name="Dry run").click()
    result = page.locator("#retention-result")
    expect(result).to_contain_text("what would go")
    expect(result.locator("tr[data-kind]")).to_have_count(1)
    expect(result.locator("tr[data-kind]")).to_contain_text("old")
    assert _tags(registry.url, session) == ["new", "old"]

    page.locator('#retention-policies tr[data-policy="team-latest"]').get_by_role(
        "button", name="Run now").click()
    expect(page.locator("#retention-result")).to_contain_text("what went")
    assert _tags(registry.url, session) == ["new"]
    page.locator("#retention-runs a").first.click()
    expect(page.locator("#retention-audit")).to_contain_text("old")
    expect(page.locator("#retention-audit")).to_contain_text("keep[0] (latest_pushed 1)")
    assert old  # the manifest stays (untagged not selected)

    # The repository page shows the pull once the worker has written it.
    def pulled_shown() -> bool:
        page.goto(registry.url + "/ui/r/team/app")
        return "never" not in page.locator('tr[data-tag="new"] td.pulled').inner_text()

    deadline = time.monotonic() + 60
    while not pulled_shown():
        assert time.monotonic() < deadline, "the pull never showed"
        time.sleep(0.5)


def _push(url: str, session: requests.Session, tag: str) -> str:
    # push_image uses plain requests: give it credentials through the URL's session
    original = requests.post, requests.put
    requests.post, requests.put = session.post, session.put  # type: ignore[assignment]
    try:
        return push_image(url, "team/app", [tag])
    finally:
        requests.post, requests.put = original  # type: ignore[assignment]


def _tags(url: str, session: requests.Session) -> list[str]:
    return session.get(f"{url}/v2/team/app/tags/list").json()["tags"]
