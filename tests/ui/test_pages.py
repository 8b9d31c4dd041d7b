"""Every reading page of the UI, through Flask's test client (no authentication)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from ociregistry.web.ui.blueprint import filesize
from tests.ui import seed


def text(client: FlaskClient, path: str, status: int = 200) -> str:
    r = client.get(path)
    assert r.status_code == status, (path, r.status_code, r.get_data(as_text=True)[:1500])
    return r.get_data(as_text=True)


def test_root_redirects_to_the_ui(client):
    r = client.get("/")
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/ui/")


def test_overview_shows_figures_recent_pushes_and_gc(client, seeded):
    html = text(client, "/ui/")
    assert "Storage used" in html
    figures = dict(re.findall(
        r'<span class="stat-value">([^<]+)</span><span class="stat-label">([^<]+)</span>', html))
    assert figures["2"] == "Repositories"
    assert figures["4"] == "Tags"
    assert "Recent pushes" in html
    assert 'href="/ui/r/library/alpine/-/tag/3.20"' in html
    assert 'href="/ui/r/team/app/-/tag/multi"' in html
    assert "No garbage collection has run yet." in html


def test_repository_list_search_sort_and_paging(client):
    for i in range(30):
        seed.image(client, f"proj/svc{i:02d}", "v1", layer_sizes=(100 * (i + 1),))
    html = text(client, "/ui/repositories?per_page=25")
    names = re.findall(r'class="repo-name" href="/ui/r/([^"]+)"', html)
    assert names == [f"proj/svc{i:02d}" for i in range(25)]
    assert "30 repositories" in html
    assert 'rel="prev"' not in html
    # Keyset pages, as /api/v1's: the next page continues after a signed cursor.
    page2 = text(client, html_link(html, "next"))
    assert re.findall(r'class="repo-name" href="/ui/r/([^"]+)"', page2) == [
        f"proj/svc{i:02d}" for i in range(25, 30)]
    assert 'rel="next"' not in page2
    back = text(client, html_link(page2, "prev"))
    assert re.findall(r'class="repo-name" href="/ui/r/([^"]+)"', back) == names
    # A cursor edited, or taken to another listing, is refused rather than misread.
    cursor = re.search(r'cursor=([^"&]+)', html_link(html, "next")).group(1)
    assert client.get(f"/ui/repositories?sort=size&cursor={cursor}").status_code == 400

    by_size = text(client, "/ui/repositories?sort=size&order=desc&per_page=25")
    assert re.findall(r'class="repo-name" href="/ui/r/([^"]+)"', by_size)[:3] == [
        "proj/svc29", "proj/svc28", "proj/svc27"]
    assert 'aria-sort="descending"' in by_size

    by_push = text(client, "/ui/repositories?sort=pushed&order=desc")
    assert re.findall(r'class="repo-name" href="/ui/r/([^"]+)"', by_push)[0] == "proj/svc29"

    found = text(client, "/ui/repositories?q=SVC1")
    assert re.findall(r'class="repo-name" href="/ui/r/([^"]+)"', found) == [
        f"proj/svc{i}" for i in range(10, 20)]
    assert "No repository matches" in text(client, "/ui/repositories?q=zzz")
    # LIKE wildcards in the search are taken literally
    assert "No repository matches" in text(client, "/ui/repositories?q=svc_")


def test_repository_page_lists_tags_with_their_manifests(client, seeded):
    html = text(client, "/ui/r/team/app")
    assert re.findall(r'class="tag-link" href="/ui/r/team/app/-/tag/([^"]+)"', html) == [
        "1.0", "arm", "multi"]
    row = html[html.index('data-tag="1.0"'):html.index('data-tag="arm"')]
    assert seeded.amd64.digest in row  # full digest in the title, short in the text
    assert "OCI manifest" in row and "Image" in row
    assert f">{filesize(seeded.amd64.content_size)}<" in row  # layers and config
    assert '<time datetime="2024-01-02T03:04:05+00:00"' in row  # created, from the annotation
    multi = html[html.index('data-tag="multi"'):]
    assert "OCI index" in multi
    assert "linux/amd64" in multi and "linux/arm64/v8" in multi
    assert "docker pull localhost/team/app:1.0" in html


def test_tags_search_sort_and_paging(client):
    for i in range(60):
        seed.manifest(client, "many/tags", f"t{i:03d}", _tiny(client, "many/tags"))
    html = text(client, "/ui/r/many/tags?per_page=25")
    html = text(client, html_link(text(client, html_link(html, "next")), "next"))
    assert re.findall(r'-/tag/([^"]+)"', html) == [f"t{i:03d}" for i in range(50, 60)]
    assert "60 tags" in html and 'rel="next"' not in html
    newest = text(client, "/ui/r/many/tags?sort=pushed&per_page=25")
    assert re.findall(r'-/tag/([^"]+)"', newest)[0] == "t059"
    filtered = text(client, "/ui/r/many/tags?q=t05")
    assert re.findall(r'-/tag/([^"]+)"', filtered) == [f"t{i:03d}" for i in range(50, 60)]


def html_link(html: str, rel: str) -> str:
    """The href of the page's rel="next" or rel="prev" link."""
    found = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    assert found, f"no {rel} link"
    return found.group(1).replace("&amp;", "&")


def _tiny(client: FlaskClient, repo: str) -> dict:
    empty = seed.blob(client, repo, b"{}")
    return {"schemaVersion": 2, "mediaType": seed.OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty,
                       "size": 2},
            "layers": []}


def test_image_manifest_page_shows_layers_config_and_history(client, seeded):
    html = text(client, "/ui/r/team/app/-/tag/1.0")
    layers = html[html.index('id="layers-title"'):html.index('id="config-title"')]
    for digest, _size in seeded.amd64.layers:
        assert digest in layers
    assert "2.9 KiB" in layers and "4.9 KiB" in layers
    assert "tar+gzip" in layers
    config = html[html.index('id="config-title"'):]
    assert "[&#34;/app/run.sh&#34;]" in config or '["/app/run.sh"]' in config
    assert "--serve" in config
    assert "PATH=/usr/bin:/bin" in config and "MODE=test" in config
    assert "8080/tcp" in config and "9090/tcp" in config
    assert "org.opencontainers.image.title" in config and "demo" in config
    assert "ADD rootfs /" in config and "COPY app /app" in config and "no layer" in config
    assert "linux/amd64" in html
    assert "docker pull localhost/team/app:1.0" in html
    assert f"docker pull localhost/team/app@{seeded.amd64.digest}" in html
    assert f'href="/ui/r/team/app/-/manifest/{seeded.index}"' in html  # part of the index


def test_index_page_lists_children_per_platform(client, seeded):
    html = text(client, f"/ui/r/team/app/-/manifest/{seeded.index}")
    platforms = html[html.index('id="platforms-title"'):html.index('id="referrers-title"')]
    assert "linux/amd64" in platforms and "linux/arm64/v8" in platforms
    assert f'href="/ui/r/team/app/-/manifest/{seeded.amd64.digest}"' in platforms
    assert f'href="/ui/r/team/app/-/manifest/{seeded.arm64.digest}"' in platforms
    assert 'id="layers-title"' not in html


def test_referrers_are_grouped_by_artifact_type(client, seeded):
    html = text(client, f"/ui/r/team/app/-/manifest/{seeded.amd64.digest}")
    referrers = html[html.index('id="referrers-title"'):]
    assert seed.COSIGN in referrers and "application/spdx+json" in referrers
    assert referrers.index("application/spdx+json") < referrers.index(seed.COSIGN)
    assert seeded.signature in referrers and seeded.sbom in referrers
    sig = text(client, f"/ui/r/team/app/-/manifest/{seeded.signature}")
    assert "Refers to" in sig and seeded.amd64.digest in sig
    assert "Artifact" in sig


def test_unknown_things_answer_html_errors(client, seeded):
    assert "Not found" in text(client, "/ui/r/no/such", 404)
    assert "Not found" in text(client, "/ui/r/team/app/-/tag/nope", 404)
    assert "Not found" in text(client, "/ui/nothing/here", 404)
    missing = "sha256:" + "0" * 64
    assert "Not found" in text(client, f"/ui/r/team/app/-/manifest/{missing}", 404)
    assert text(client, "/ui/r/team/app/-/manifest/sha256:xyz", 400)
    assert text(client, "/ui/r/Bad..Name", 400)
    r = client.get("/ui/r/no/such")
    assert r.mimetype == "text/html"


def test_pages_carry_security_headers_and_escape_content(client):
    seed.image(client, "xss/app", "v1", labels={"evil": "<script>alert(1)</script>"},
               annotations={"note": "<img src=x onerror=alert(1)>"})
    r = client.get("/ui/r/xss/app/-/tag/v1")
    html = r.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"


def test_static_files_and_reading_without_javascript(client, seeded):
    for name in ("ui.css", "ui.js", "theme.js", "logo.svg"):
        assert client.get(f"/ui/static/{name}").status_code == 200
    html = text(client, "/ui/r/team/app")
    # Copy buttons only appear with JavaScript; the commands are there as text.
    assert re.search(r'<button[^>]*copy-button[^>]*hidden', html)
    assert '<code class="copy-text">docker pull localhost/team/app:1.0</code>' in html


def test_empty_registry(client):
    assert "No repositories yet" in text(client, "/ui/repositories")
    assert "Nothing pushed yet" in text(client, "/ui/")
