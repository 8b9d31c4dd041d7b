"""Tag history with restore buttons and the tag rules page: in-process for access
checks, then in headless Chromium against a real registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from playwright.sync_api import expect

from tests.lifecycle_tags.support import push_image, tag_digest
from tests.ui.conftest import AUTH_RULES, PASSWORDS, csrf_of, sign_in, write_htpasswd
from tests.ui.test_browser import TIMEOUT_MS, UIRegistry, browser  # noqa: F401


@pytest.fixture
def history_registry(tmp_path: Path) -> Iterator[UIRegistry]:
    """A real registry with users and rules, and the default restore window."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"auth": {"htpasswd": str(htpasswd),
                                               "rules": AUTH_RULES}}))
    server = UIRegistry(tmp_path / "data", config=config)
    server.start()
    yield server
    server.stop()


def test_only_admins_manage_tag_rules(auth_app):
    app, runtime = auth_app
    c = app.test_client()
    r = c.get("/ui/tag-rules")
    assert r.status_code == 302 and "/ui/login" in r.headers["Location"]
    sign_in(c, "alice")
    assert c.get("/ui/tag-rules").status_code == 403
    assert c.post("/ui/tag-rules", data={"kind": "immutable", "tags": "x",
                                         "csrf_token": csrf_of(c, "/ui/")}).status_code == 403
    admin = app.test_client()
    sign_in(admin, "admin")
    csrf = csrf_of(admin, "/ui/tag-rules")
    r = admin.post("/ui/tag-rules", data={"kind": "immutable", "tags": "v*", "users": "bob",
                                          "csrf_token": csrf})
    assert r.status_code == 400 and "names no users" in r.get_data(as_text=True)
    r = admin.post("/ui/tag-rules", data={"kind": "protected", "repositories": "team/**",
                                          "tags": "stable", "groups": "release",
                                          "csrf_token": csrf})
    assert r.status_code == 303
    rules = runtime.tags.rules.rules()
    assert [(x.kind, x.repositories, x.tags, x.groups) for x in rules] == [
        ("protected", "team/**", "stable", ("release",))]
    assert admin.post(f"/ui/tag-rules/{rules[0].id}/delete",
                      data={"csrf_token": csrf}).status_code == 303
    assert runtime.tags.rules.rules() == []


def test_restore_from_the_history_page_in_a_browser(browser, history_registry):  # noqa: F811
    registry, repo = history_registry, "team/history"
    alice = requests.Session()
    alice.auth = ("alice", PASSWORDS["alice"])
    first, _, _ = push_image(alice, registry.url, repo, "t")
    second, _, _ = push_image(alice, registry.url, repo, "t")

    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(registry.url + "/ui/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill(PASSWORDS["alice"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as alice.")).to_be_visible()

    page.goto(f"{registry.url}/ui/r/{repo}/-/tag/t")
    page.locator("#tag-history-link").click()
    expect(page.get_by_role("heading", name=f"{repo}:t history")).to_be_visible()
    rows = page.locator("#tag-history tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-action", "move")
    expect(rows.nth(0)).to_contain_text("alice")
    # the current digest has no button; the earlier one has
    expect(page.locator(f'.restore-button[data-digest="{second}"]')).to_have_count(0)
    page.locator(f'.restore-button[data-digest="{first}"]').first.click()
    expect(page.get_by_text(f"Tag t restored to {first}.")).to_be_visible()
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_have_attribute("data-action", "restore")
    expect(rows.nth(0)).to_contain_text("alice")
    assert tag_digest(alice, registry.url, repo, "t") == first
    # a deleted tag is found from the repository page
    assert alice.delete(f"{registry.url}/v2/{repo}/manifests/t").status_code == 202
    push_image(alice, registry.url, repo, "other")
    page.goto(f"{registry.url}/ui/r/{repo}")
    page.locator("#repo-history-link").click()
    expect(page.locator("#repository-history tbody tr").first).to_have_attribute(
        "data-action", "push")
    page.locator("#repository-history").get_by_role("link", name="t", exact=True).first.click()
    expect(rows.nth(0)).to_have_attribute("data-action", "delete")
    page.locator(f'.restore-button[data-digest="{first}"]').first.click()
    expect(page.get_by_text(f"Tag t restored to {first}.")).to_be_visible()
    assert tag_digest(alice, registry.url, repo, "t") == first

    # an admin makes the tag immutable in the UI; deleting it in the UI is refused
    admin_page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    admin_page.set_default_timeout(TIMEOUT_MS)
    admin_page.goto(registry.url + "/ui/login")
    admin_page.get_by_label("User name").fill("admin")
    admin_page.get_by_label("Password").fill(PASSWORDS["admin"])
    admin_page.get_by_role("button", name="Sign in").click()
    admin_page.get_by_role("navigation", name="Main").get_by_role("link", name="Tag rules").click()
    admin_page.get_by_label("Kind").select_option("immutable")
    admin_page.get_by_label("Repositories").fill("team/**")
    admin_page.get_by_label("Tags", exact=False).first.fill("t")
    admin_page.get_by_role("button", name="Add rule").click()
    expect(admin_page.get_by_text("it applies now")).to_be_visible()
    expect(admin_page.locator("#tag-rules tbody tr", has_text="team/**")).to_have_count(1)

    page.goto(f"{registry.url}/ui/r/{repo}/-/tag/t")
    page.get_by_role("link", name="Delete tag t").click()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("is immutable (rule api:")).to_be_visible()
    assert tag_digest(alice, registry.url, repo, "t") == first
