"""End to end in headless Chromium (Debian's, driven by Playwright): push with skopeo,
sign in, find the repository, open a tag, see layers and platforms, delete a tag,
run garbage collection.

Set UI_SCREENSHOTS_DIR to keep the screenshots (docs/ui/ holds the README's).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.clients import images
from tests.clients.clitools import docker_ref
from tests.server import RegistryProcess
from tests.ui.conftest import AUTH_RULES, PASSWORDS, write_htpasswd

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 60_000  # per browser step: generous for a loaded 2-core machine
GC_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Debian's chromium is not installed; ./run-tests.sh installs it",
                    pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class UIRegistry(RegistryProcess):
    """A registry process whose readiness is its sign-in page (/v2/ answers 401 here)."""

    def start(self) -> UIRegistry:
        cmd = [
            sys.executable, "-m", "ociregistry", "serve", "--host", "127.0.0.1",
            "--port", str(self.port), "--data-dir", str(self.data_dir),
            "--workers", str(self.workers), "--config", str(self.config),
        ]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=str(self.data_dir.parent))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/ui/login", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("registry did not start in time")


@pytest.fixture
def secured_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A real registry (gunicorn, 2 workers) with htpasswd users and access rules."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "gc": {"grace_period_seconds": 0},
        "tags": {"restore_window_seconds": 0},  # what is deleted, GC frees at once
        "auth": {"htpasswd": str(htpasswd), "rules": AUTH_RULES},
    }))
    server = UIRegistry(tmp_path / "data", config=config)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("UI_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


def shot(page: Page, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def test_browse_delete_and_collect_in_a_browser(browser, secured_registry, skopeo, oci_index,
                                                salt, tmp_path, shots):
    registry = secured_registry
    admin = ("admin", PASSWORDS["admin"])
    creds = f"--dest-creds={admin[0]}:{admin[1]}"
    # An index (linux/amd64 + linux/arm64/v8) and an image of its own, pushed by skopeo.
    skopeo.copy(oci_index.ref, docker_ref(registry.host, "e2e/app", "multi"), "--all", creds)
    solo_layout = tmp_path / "solo"
    solo = images.write_image(solo_layout, salt + "-solo", tag="v1")
    skopeo.copy(f"oci:{solo_layout}:v1", docker_ref(registry.host, "e2e/app", "v1"), creds)

    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  color_scheme="light")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=registry.url)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)

    # / leads to the UI; anonymous callers see nothing of e2e/app and are asked to sign in.
    page.goto(registry.url + "/")
    expect(page).to_have_url(re.compile(r"/ui/$"))
    expect(page.get_by_text("Nothing pushed yet that you may see")).to_be_visible()
    page.get_by_role("link", name="Sign in").first.click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    shot(page, shots, "login")
    page.get_by_label("Password").fill(admin[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as admin.")).to_be_visible()
    expect(page.get_by_role("link", name="e2e/app").first).to_be_visible()

    # Find the repository by searching for it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Repositories").click()
    page.get_by_label("Search repositories by name").fill("e2e")
    page.get_by_label("Search repositories by name").press("Enter")
    page.get_by_role("link", name="e2e/app", exact=True).click()
    expect(page.get_by_role("heading", name="e2e/app", exact=True)).to_be_visible()
    rows = page.locator("tr[data-tag]")
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.tag)") == ["multi", "v1"]
    multi_row = page.locator('tr[data-tag="multi"]')
    expect(multi_row).to_contain_text("linux/amd64")
    expect(multi_row).to_contain_text("linux/arm64/v8")
    expect(multi_row).to_contain_text("Index")

    shot(page, shots, "repository")

    # The pull command is ready to copy.
    page.locator('tr[data-tag="v1"]').get_by_role("button", name="Copy pull command").click()
    expect(page.locator('tr[data-tag="v1"]').get_by_role("button")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == f"docker pull {registry.host}/e2e/app:v1"

    # A tag: its layers and image configuration.
    page.get_by_role("link", name="v1", exact=True).click()
    expect(page.get_by_role("heading", name="e2e/app:v1")).to_be_visible()
    layers = page.locator("table.layers tbody tr")
    expect(layers).to_have_count(3)
    for row, digest in zip(layers.all(), solo.layer_digests, strict=True):
        expect(row.locator(".digest")).to_have_attribute("title", digest)
    config = page.locator("section", has=page.get_by_role("heading", name="Configuration"))
    expect(config).to_contain_text('["/app/run.sh"]')
    expect(config).to_contain_text("org.example.salt")
    history = page.locator("table.history")
    expect(history).to_contain_text("COPY app /app")
    shot(page, shots, "manifest")

    # The index: one child per platform.
    page.get_by_role("link", name="e2e/app", exact=True).click()
    page.get_by_role("link", name="multi", exact=True).click()
    heading = page.get_by_role("heading", name=re.compile("Platforms"))
    platforms = page.locator("section", has=heading)
    expect(platforms).to_contain_text("linux/amd64")
    expect(platforms).to_contain_text("linux/arm64/v8")
    expect(platforms.locator("tbody tr")).to_have_count(2)
    shot(page, shots, "index")
    platforms.get_by_role("link").first.click()
    expect(page.get_by_text("Part of index")).to_be_visible()

    # Delete tag v1, with a confirmation; it is gone afterwards.
    page.get_by_role("link", name="e2e/app", exact=True).click()
    page.get_by_role("link", name="Delete tag v1").click()
    expect(page.get_by_role("heading", name="Delete tag v1?")).to_be_visible()
    shot(page, shots, "confirm-delete")
    page.get_by_role("button", name="Delete tag v1").click()
    expect(page.get_by_text("Tag v1 deleted from e2e/app.")).to_be_visible()
    expect(page.locator('tr[data-tag="v1"]')).to_have_count(0)
    expect(page.locator('tr[data-tag="multi"]')).to_have_count(1)
    tags = requests.get(f"{registry.url}/v2/e2e/app/tags/list", auth=admin, timeout=30).json()
    assert tags["tags"] == ["multi"]

    # Garbage collection, untagged manifests included: watch it finish.
    page.get_by_role("link", name="Garbage collection").click()
    page.get_by_label("Also delete untagged manifests").check()
    page.get_by_role("button", name="Start garbage collection").click()
    expect(page.get_by_text("Garbage collection started.")).to_be_visible()
    expect(page.locator(".status-done")).to_contain_text("Finished", timeout=GC_TIMEOUT_MS)
    deleted = page.locator(".stat", has_text="manifests deleted").locator(".stat-value")
    expect(deleted).to_have_text("1")
    expect(page.locator("section", has_text="Recent runs").locator("tbody tr")).to_have_count(1)
    shot(page, shots, "gc")
    gone = requests.get(f"{registry.url}/v2/e2e/app/manifests/{solo.digest}", auth=admin,
                        timeout=30)
    assert gone.status_code == 404
    kept = requests.head(f"{registry.url}/v2/e2e/app/manifests/multi", auth=admin, timeout=30)
    assert kept.status_code == 200

    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_text("Storage used")).to_be_visible()
    shot(page, shots, "overview")

    # The theme follows the system until chosen; the choice survives a reload.
    toggle = page.get_by_role("button", name=re.compile("Colour theme"))
    toggle.click()
    toggle.click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Repositories").click()
    page.get_by_role("link", name="e2e/app", exact=True).click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    shot(page, shots, "repository-dark")

    # Signing out ends the session.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("Signed out.")).to_be_visible()
    page.goto(registry.url + "/ui/gc")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    context.close()
