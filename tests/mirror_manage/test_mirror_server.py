"""The mirror's management on a real server in front of a real upstream (a second
instance of this registry): `ociregistry mirror sync` with its progress, pre-fetch and
eviction through /api/v1/mirror, admins only, never an upstream credential, and the
ordinary GC freeing what eviction let go. Time is moved by ageing the recorded fill and
pull times in the mirror's index, never by waiting."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from tests.helpers import OCI_MANIFEST
from tests.lifecycle.support import wait_for
from tests.mirror_manage.conftest import UPSTREAM_PASSWORD, Mirror
from tests.ops.test_metrics import scrape, value

API = "/api/v1/mirror"
DAY = 86400.0


def _blob_file(mirror: Mirror, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":")
    return mirror.server.data_dir / "blobs" / algorithm / hexdigest[:2] / hexdigest


def _upstream_manifest(mirror: Mirror, repo: str, tag: str) -> dict:
    r = mirror.session(None).get(f"{mirror.upstream.url}/v2/{repo}/manifests/{tag}",
                                 headers={"Accept": OCI_MANIFEST}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _layers(manifest: dict) -> list[str]:
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


def _pull(mirror: Mirror, repo: str, tag: str) -> None:
    """A client's pull through the mirror: manifest, then every blob."""
    session = mirror.session("admin")
    r = session.get(f"{mirror.url}/v2/up/{repo}/manifests/{tag}",
                    headers={"Accept": OCI_MANIFEST}, timeout=60)
    assert r.status_code == 200, r.text
    for digest in _layers(r.json()):
        blob = session.get(f"{mirror.url}/v2/up/{repo}/blobs/{digest}", timeout=60)
        assert blob.status_code == 200, blob.text


def _engine(mirror: Mirror) -> sa.Engine:
    url = mirror.server.env.get("OCIREGISTRY_DATABASE__URL") or \
        f"sqlite:///{mirror.server.data_dir / 'registry.db'}"
    return sa.create_engine(url)


def _age(mirror: Mirror, repository: str, days: float) -> None:
    """Move the repository's fill and pull times ``days`` into the past."""
    shift = days * DAY
    engine = _engine(mirror)
    with engine.begin() as conn:
        rid = conn.execute(sa.text("SELECT id FROM repositories WHERE name = :n"),
                           {"n": repository}).scalar_one()
        conn.execute(sa.text("UPDATE tags SET updated_at = updated_at - :s "
                             "WHERE repository_id = :r"), {"s": shift, "r": rid})
        conn.execute(sa.text("UPDATE tag_pulls SET last_pulled_at = last_pulled_at - :s "
                             "WHERE repository_id = :r"), {"s": shift, "r": rid})
        conn.execute(sa.text("UPDATE manifest_pulls SET last_pulled_at = last_pulled_at - :s "
                             "WHERE manifest_id IN (SELECT id FROM manifests "
                             "WHERE repository_id = :r)"), {"s": shift, "r": rid})
        conn.execute(sa.text("UPDATE manifests SET created_at = created_at - :s "
                             "WHERE repository_id = :r"), {"s": shift, "r": rid})
    engine.dispose()


def _pulls(mirror: Mirror, repository: str, tag: str) -> int:
    """The tag's recorded pull count (0: none recorded yet)."""
    engine = _engine(mirror)
    with engine.connect() as conn:
        found = conn.execute(sa.text(
            "SELECT count FROM tag_pulls tp JOIN repositories r ON r.id = tp.repository_id "
            "WHERE r.name = :n AND tp.name = :t"), {"n": repository, "t": tag}).scalar()
    engine.dispose()
    return int(found or 0)


def test_sync_cli_dry_run_then_pulls_the_matching_tags_with_progress(mirror: Mirror) -> None:
    dry = mirror.cli("mirror", "sync", "--upstream", "up", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would pull up/library/alpine:3.19" in dry.stdout
    assert "would pull up/library/alpine:3.20" in dry.stdout
    assert "edge" not in dry.stdout
    for tag in ("3.19", "3.20"):  # nothing fetched by the dry run
        for digest in _layers(_upstream_manifest(mirror, "library/alpine", tag)):
            assert not _blob_file(mirror, digest).exists()

    run = mirror.cli("mirror", "sync", "--upstream", "up")
    assert run.returncode == 0, run.stderr
    assert "pre-fetch: 0/2" in run.stderr and "pre-fetch: 2/2" in run.stderr  # progress
    assert "upstream up: pulled 2 tags" in run.stdout
    for tag in ("3.19", "3.20"):
        for digest in _layers(_upstream_manifest(mirror, "library/alpine", tag)):
            assert _blob_file(mirror, digest).is_file(), (tag, digest)
    for digest in _layers(_upstream_manifest(mirror, "library/alpine", "edge")):
        assert not _blob_file(mirror, digest).exists()
    state = mirror.session().get(f"{mirror.url}{API}/repositories/up/library/alpine",
                                 timeout=30).json()
    assert {t["name"]: t["state"] for t in state["tags"]} == {"3.19": "fresh", "3.20": "fresh"}
    assert state["upstream"] == "up" and state["upstream_repository"] == "library/alpine"
    # The run is recorded, for the API and the UI.
    runs = mirror.session().get(f"{mirror.url}{API}/upstreams/up/syncs", timeout=30).json()
    assert runs["items"][0]["status"] == "done" and runs["items"][0]["trigger"] == "cli"
    assert runs["items"][0]["tags_done"] == 2 and runs["items"][0]["bytes"] > 0

    status = mirror.cli("mirror", "status")
    assert status.returncode == 0 and "up\t" in status.stdout and "ok" in status.stdout

    unknown = mirror.cli("mirror", "sync", "--upstream", "nope")
    assert unknown.returncode == 2 and "no upstream nope" in unknown.stderr


def test_a_sync_started_through_the_api_runs_in_the_background(mirror: Mirror) -> None:
    admin = mirror.session()
    r = admin.post(f"{mirror.url}{API}/upstreams/up/sync", timeout=30)
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    assert r.json()["href"] == f"/api/v1/mirror/syncs/{run_id}"

    def finished() -> dict | None:
        run = admin.get(f"{mirror.url}{API}/syncs/{run_id}", timeout=30).json()
        return run if run["status"] != "running" else None

    run = wait_for(finished, timeout=120, what="the pre-fetch run to finish")
    assert run["status"] == "done" and run["trigger"] == "api", run
    assert run["tags_total"] == 2 and run["tags_done"] == 2 and run["started_by"] == "admin"
    samples = scrape(f"{mirror.url}/metrics", auth=("admin", "admin-pw"))
    assert value(samples, "registry_mirror_prefetch_runs_total", upstream="up",
                 outcome="success") >= 1
    assert value(samples, "registry_mirror_prefetch_tags_total", upstream="up",
                 outcome="pulled") >= 2


def test_only_admins_manage_the_mirror(mirror: Mirror) -> None:
    for who, status in ((None, 401), ("bob", 403)):
        session = mirror.session(who)
        assert session.get(f"{mirror.url}{API}/upstreams", timeout=30).status_code == status
        r = session.post(f"{mirror.url}{API}/upstreams/up/evict?dry_run=false", timeout=30)
        assert r.status_code == status
        assert r.headers["Content-Type"] == "application/problem+json"
        assert session.post(f"{mirror.url}{API}/upstreams/up/sync",
                            timeout=30).status_code == status


def test_upstreams_are_shown_with_state_and_never_with_credentials(mirror: Mirror) -> None:
    _pull(mirror, "library/alpine", "3.20")
    admin = mirror.session()
    r = admin.get(f"{mirror.url}{API}/upstreams", timeout=30)
    assert r.status_code == 200
    assert UPSTREAM_PASSWORD not in r.text and "password" not in r.text
    up = next(u for u in r.json()["items"] if u["name"] == "up")
    assert up["name"] == "up" and up["url"] == mirror.upstream.url
    assert up["hosts"] == ["upstream.example"] and up["authenticated"] is True
    assert up["state"]["last_ok_at"] is not None and up["state"]["last_error"] is None
    assert up["cache"]["repositories"] >= 1 and up["cache"]["bytes"] > 0
    one = admin.get(f"{mirror.url}{API}/upstreams/up", timeout=30)
    assert one.json()["name"] == "up" and UPSTREAM_PASSWORD not in one.text
    repos = admin.get(f"{mirror.url}{API}/upstreams/up/repositories", timeout=30).json()
    alpine = next(r for r in repos["items"] if r["name"] == "up/library/alpine")
    assert alpine["upstream_repository"] == "library/alpine" and alpine["tags"] >= 2
    assert alpine["last_checked_at"] is not None
    # Problems: unknown upstream, run, repository outside every prefix; bad parameters.
    for path, status, code in (("/upstreams/nope", 404, "not_found"),
                               ("/upstreams/nope/repositories", 404, "not_found"),
                               ("/syncs/999999", 404, "not_found"),
                               ("/repositories/local/thing", 404, "not_found"),
                               ("/upstreams/up/repositories?limit=0", 400,
                                "invalid_parameter"),
                               ("/upstreams/UP!", 404, "not_found")):
        r = admin.get(f"{mirror.url}{API}{path}", timeout=30)
        assert (r.status_code, r.json()["code"]) == (status, code), (path, r.text)
    r = admin.post(f"{mirror.url}{API}/upstreams/up/evict?dry_run=maybe", timeout=30)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_parameter")


def test_eviction_of_unused_content_then_gc_frees_its_blobs(mirror: Mirror) -> None:
    for repo in ("library/busybox", "library/pinned"):
        _pull(mirror, repo, "1")
    wait_for(lambda: _pulls(mirror, "up/library/busybox", "1"), what="pull stats")
    wait_for(lambda: _pulls(mirror, "up/library/pinned", "1"), what="pull stats")
    busybox = _layers(_upstream_manifest(mirror, "library/busybox", "1"))
    pinned = _layers(_upstream_manifest(mirror, "library/pinned", "1"))
    for repo in ("up/library/busybox", "up/library/pinned", "up/library/alpine"):
        _age(mirror, repo, 30)
    admin = mirror.session()

    dry = admin.post(f"{mirror.url}{API}/upstreams/up/evict", timeout=60)  # dry by default
    assert dry.status_code == 200, dry.text
    planned = {(d["kind"], d["repository"], d["tag"]) for d in dry.json()["deletions"]}
    assert ("tag", "up/library/busybox", "1") in planned
    # pinned, and alpine 3.* (the prefetch list), stay; alpine:edge was never cached.
    assert {repo for _k, repo, _t in planned} == {"up/library/busybox"}
    assert dry.json()["dry_run"] is True and dry.json()["bytes_freed"] > 0
    assert all(_blob_file(mirror, d).is_file() for d in busybox)

    real = admin.post(f"{mirror.url}{API}/upstreams/up/evict?dry_run=false", timeout=60)
    assert real.status_code == 200, real.text
    assert real.json()["tags"] == 1 and real.json()["manifests"] == 1
    gone = admin.get(f"{mirror.url}{API}/repositories/up/library/busybox", timeout=30).json()
    assert gone["tags"] == []
    # Audited with retention's runs, under policy mirror:up.
    runs = admin.get(f"{mirror.url}/api/v1/retention/runs?policy=mirror:up", timeout=30)
    assert runs.json()["items"][0]["id"] == real.json()["run_id"]
    upstream = admin.get(f"{mirror.url}{API}/upstreams/up", timeout=30).json()
    assert upstream["last_eviction"]["id"] == real.json()["run_id"]

    samples = scrape(f"{mirror.url}/metrics", auth=("admin", "admin-pw"))
    assert value(samples, "registry_mirror_evicted_total", upstream="up", kind="tag") >= 1
    assert value(samples, "registry_mirror_evicted_bytes_total", upstream="up") > 0

    gc = mirror.cli("gc")
    assert gc.returncode == 0, gc.stderr
    assert not any(_blob_file(mirror, d).exists() for d in busybox)
    assert all(_blob_file(mirror, d).is_file() for d in pinned)
    # The next pull fetches it again from upstream (no freshness row was left behind).
    _pull(mirror, "library/busybox", "1")
    # (a streamed fill commits just after the client's last byte)
    wait_for(lambda: all(_blob_file(mirror, d).is_file() for d in busybox), what="refill")


def test_evict_cli_dry_run_lists_reasons(mirror: Mirror) -> None:
    before = _pulls(mirror, "up/library/busybox", "1")
    _pull(mirror, "library/busybox", "1")
    wait_for(lambda: _pulls(mirror, "up/library/busybox", "1") > before, what="pull stats")
    rules: list[str] = []

    def listed() -> bool:
        # Aged again each time: a pull an earlier test made through the other worker may
        # reach the index only at that worker's next flush, after an earlier ageing.
        _age(mirror, "up/library/busybox", 10)
        out = mirror.cli("mirror", "evict", "--upstream", "up", "--dry-run", "--json")
        assert out.returncode == 0, out.stderr
        (result,) = json.loads(out.stdout)
        rules[:] = [d["rule"] for d in result["deletions"]
                    if d["repository"] == "up/library/busybox"]
        return bool(rules)

    wait_for(listed, what="busybox listed for eviction")
    assert all("evict_unused_after 1w" in rule for rule in rules)


def test_a_prefetch_that_cannot_reach_its_upstream_fails_visibly(mirror: Mirror) -> None:
    out = mirror.cli("mirror", "sync", "--upstream", "down")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "failed down/library/alpine: listing tags" in out.stderr
    (run, *_) = mirror.session().get(f"{mirror.url}{API}/upstreams/down/syncs",
                                     timeout=30).json()["items"]
    assert run["status"] == "partial" and run["tags_failed"] == 1
    assert run["problems"][0]["repository"] == "library/alpine"
    down = mirror.session().get(f"{mirror.url}{API}/upstreams/down", timeout=30).json()
    assert down["state"]["last_error"] and down["last_sync"]["status"] == "partial"
