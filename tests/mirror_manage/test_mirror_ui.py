"""The mirror in the web UI: the Mirror page (admins only, CSRF-checked, never a
credential), eviction from it, and the card a mirrored repository's page shows with
the cache state per tag. In-process first, then in headless Chromium against the real
mirror of a real upstream."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from ociregistry.metadata import mirror_queries as mq
from ociregistry.web.app import create_app
from tests.mirror_manage.conftest import PASSWORDS as SERVER_PASSWORDS
from tests.mirror_manage.conftest import Mirror
from tests.mirror_manage.support import DAY, mirror_runtime, store_image
from tests.ui.conftest import AUTH_RULES, PASSWORDS, csrf_of, sign_in, write_htpasswd
from tests.ui.test_browser import TIMEOUT_MS, browser  # noqa: F401


@pytest.fixture
def app(tmp_path: Path) -> Any:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    runtime = mirror_runtime(tmp_path, auth={
        "htpasswd": str(htpasswd),
        "rules": [*AUTH_RULES, {"users": ["bob"], "repositories": ["hub/**"],
                                "actions": ["pull"]}]})
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    yield app, runtime
    runtime.metadata.dispose()


def test_only_admins_see_the_mirror_page(app: Any) -> None:
    flask_app, _ = app
    c = flask_app.test_client()
    r = c.get("/ui/mirror")
    assert r.status_code == 302 and "/ui/login" in r.headers["Location"]
    sign_in(c, "bob")
    assert c.get("/ui/mirror").status_code == 403
    assert c.post("/ui/mirror/hub/evict", data={"csrf_token": csrf_of(c, "/ui/")}
                  ).status_code == 403
    assert ">Mirror</a>" not in c.get("/ui/").get_data(as_text=True)


def test_the_page_lists_upstreams_and_evicts_without_showing_credentials(app: Any) -> None:
    flask_app, runtime = app
    store_image(runtime, "hub/library/old", ["1"])
    mq.update_upstream(runtime.metadata, "hub", last_error="hub answered 503",
                       last_error_at=time.time(), rate_limited_until=time.time() + 600)
    c = flask_app.test_client()
    sign_in(c, "admin")
    html = c.get("/ui/mirror").get_data(as_text=True)
    assert ">Mirror</a>" in html and 'data-upstream="hub"' in html
    assert 'data-upstream="ghcr"' in html and "hub answered 503" in html
    assert "rate limited" in html
    assert "s3cret-upstream-pw" not in html and "mirror-user" not in html
    assert c.post("/ui/mirror/hub/evict", data={"dry_run": "true"}).status_code == 403  # CSRF
    csrf = csrf_of(c, "/ui/mirror")
    runtime.mirror_manage.eviction.clock = lambda: time.time() + 30 * DAY
    r = c.post("/ui/mirror/hub/evict", data={"dry_run": "true", "csrf_token": csrf})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "Eviction dry run of hub: 1 tags" in page
    assert "hub/library/old" in page
    r = c.post("/ui/mirror/hub/evict", data={"dry_run": "false", "csrf_token": csrf})
    assert "Eviction of hub: 1 tags, 1 manifests" in r.get_data(as_text=True)
    assert c.post("/ui/mirror/nope/evict", data={"csrf_token": csrf}).status_code == 404
    listing = c.get("/ui/mirror?upstream=hub").get_data(as_text=True)
    assert 'id="mirror-repositories"' in listing


def test_a_mirrored_repository_page_shows_its_cache_state(app: Any) -> None:
    flask_app, runtime = app
    digest = store_image(runtime, "hub/library/alpine", ["3.20", "edge"])
    store_image(runtime, "team/app", ["v1"])
    mq.record_check(runtime.metadata, "hub/library/alpine", "3.20", "hub", digest)
    mq.record_check(runtime.metadata, "hub/library/alpine", "edge", "hub", digest,
                    at=time.time() - 3600)  # older than tag_ttl (5 min)
    mq.record_check(runtime.metadata, "hub/library/alpine", "gone", "hub", None)
    c = flask_app.test_client()
    sign_in(c, "bob")  # a puller sees the card too
    html = c.get("/ui/r/hub/library/alpine").get_data(as_text=True)
    assert "Mirrored from upstream hub" in html and "<code>library/alpine</code>" in html
    states = dict(re.findall(r'data-tag="([^"]+)" data-state="([^"]+)"', html))
    assert states == {"3.20": "fresh", "edge": "stale", "gone": "negative"}
    sign_in(c, "alice")
    assert "mirror-card" not in c.get("/ui/r/team/app").get_data(as_text=True)


def test_the_mirror_page_and_a_mirrored_repository_in_a_browser(browser,  # noqa: F811
                                                                  mirror: Mirror) -> None:
    sync = mirror.cli("mirror", "sync", "--upstream", "up")
    assert sync.returncode == 0, sync.stderr
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(mirror.url + "/ui/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(SERVER_PASSWORDS["admin"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as admin.")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mirror").click()
    expect(page.get_by_role("heading", name="Mirror", exact=True)).to_be_visible()
    row = page.locator('#mirror-upstreams tr[data-upstream="up"]')
    expect(row).to_contain_text(mirror.upstream.url)
    expect(row.locator(".upstream-state")).to_contain_text("ok")
    expect(page.locator("#mirror-syncs")).to_contain_text("done")
    row.get_by_role("button", name="Evict: dry run").click()
    expect(page.locator("#mirror-eviction")).to_contain_text("Eviction dry run of up")

    page.locator('#mirror-upstreams tr[data-upstream="up"]').get_by_role(
        "link", name="up").click()
    page.locator('#mirror-repositories tr[data-repository="up/library/alpine"]').get_by_role(
        "link").click()
    card = page.locator("#mirror-card")
    expect(card).to_contain_text("Mirrored from upstream up")
    expect(card.locator('tr[data-tag="3.20"]')).to_contain_text("fresh")
    expect(card.locator('tr[data-tag="3.19"]')).to_contain_text("fresh")


def test_pre_fetch_is_started_from_the_page(app: Any) -> None:
    flask_app, runtime = app
    c = flask_app.test_client()
    sign_in(c, "admin")
    csrf = csrf_of(c, "/ui/mirror")
    r = c.post("/ui/mirror/hub/sync", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert "Pre-fetch run #" in c.get("/ui/mirror").get_data(as_text=True)
    runs = runtime.mirror_manage.sync_runs("hub")
    assert runs and runs[0]["trigger"] == "ui"
    # ghcr has no prefetch list
    r = c.post("/ui/mirror/ghcr/sync", data={"csrf_token": csrf})
    assert r.status_code == 409 and "nothing to pre-fetch" in r.get_data(as_text=True)
