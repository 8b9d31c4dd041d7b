"""/api/v1/docs in headless Chromium: the OpenAPI document renders from the registry's own
assets, under its CSP, and no request leaves loopback (Swagger UI from a CDN would)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, expect

from tests.server import RegistryProcess
from tests.ui.test_browser import TIMEOUT_MS, browser  # noqa: F401 (the browser fixture)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    server = RegistryProcess(tmp_path / "data", workers=1).start()
    try:
        yield server
    finally:
        server.stop()


def test_docs_render_from_loopback_only(browser: Browser,  # noqa: F811
                                        registry: RegistryProcess) -> None:
    context = browser.new_context()
    # The browser asks for /favicon.ico on its own; the registry has none (a 404 logged
    # to the console that says nothing about the docs).
    context.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    page = context.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(registry.url + "/api/v1/docs", timeout=TIMEOUT_MS)
    # Rendered from the document: an operation's summary and the document's title.
    expect(page.get_by_text("List and search repositories").first).to_be_visible(
        timeout=TIMEOUT_MS)
    expect(page.locator(".info .title")).to_be_visible(timeout=TIMEOUT_MS)
    assert any(url.endswith("/api/v1/openapi.json") for url in requested), requested
    foreign = [url for url in requested
               if urlsplit(url).scheme not in ("data", "blob")
               and urlsplit(url).netloc != registry.host]
    assert not foreign, foreign
    assert not failed, failed
    assert not problems, problems  # no CSP violation, no script error
    context.close()
