"""The imports page: admins only; a run recorded by the importer shows its figures and
its problems with their paths. In-process first, then in headless Chromium."""

from __future__ import annotations

import subprocess
import sys

import requests
from playwright.sync_api import expect

from ociregistry.importer.distribution import DistributionImporter
from ociregistry.importer.sources import FilesystemSource
from ociregistry.importer.status import ImportRecorder
from tests.distribution import Store
from tests.ui.conftest import PASSWORDS, sign_in
from tests.ui.test_browser import TIMEOUT_MS, browser, secured_registry  # noqa: F401


def broken_store(root) -> Store:  # noqa: ANN001
    store = Store(root)
    store.image("team/app", "v1", "ui")
    store.put("repositories/team/app/_manifests/tags/crashed/current/link", b"")
    return store


def test_only_admins_see_imports(auth_app, tmp_path):
    app, runtime = auth_app
    store = broken_store(tmp_path / "dist")
    recorder = ImportRecorder(runtime.metadata, str(store.root))
    importer = DistributionImporter(runtime.registry, FilesystemSource(str(store.root)),
                                    progress=recorder)
    recorder.finish(importer.run())
    c = app.test_client()
    r = c.get("/ui/imports")
    assert r.status_code == 302 and "/ui/login" in r.headers["Location"]
    sign_in(c, "alice")
    assert c.get("/ui/imports").status_code == 403
    assert c.get(f"/ui/imports/{recorder.run_id}").status_code == 403
    assert "Imports</a>" not in c.get("/ui/").get_data(as_text=True)

    admin = app.test_client()
    sign_in(admin, "admin")
    listing = admin.get("/ui/imports").get_data(as_text=True)
    assert str(store.root) in listing and "finished" in listing
    detail = admin.get(f"/ui/imports/{recorder.run_id}").get_data(as_text=True)
    assert "empty-link" in detail and "tags/crashed/current/link" in detail
    assert admin.get("/ui/imports/999999").status_code == 404


def test_an_import_followed_in_a_browser(browser, secured_registry, tmp_path):  # noqa: F811
    registry = secured_registry
    store = broken_store(tmp_path / "dist")
    out = subprocess.run(
        [sys.executable, "-m", "ociregistry", "import", "distribution", "--quiet",
         "--config", str(registry.config), "--data-dir", str(registry.data_dir),
         str(store.root)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(registry.url + "/ui/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORDS["admin"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as admin.")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Imports").click()
    row = page.locator("#import-runs tbody tr", has_text=str(store.root))
    expect(row).to_have_count(1)
    expect(row.locator(".import-state")).to_have_text("finished")
    row.get_by_role("link").click()
    expect(page.locator("#import-state")).to_have_text("finished")
    expect(page.locator("#import-problems tbody tr", has_text="empty-link")).to_have_count(1)
    tags = requests.get(registry.url + "/v2/team/app/tags/list", timeout=30,
                        auth=("admin", PASSWORDS["admin"]))
    assert tags.json()["tags"] == ["v1"]  # and the image itself is in
