"""Deleting and garbage collection from the UI (no authentication configured)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from flask.testing import FlaskClient

from tests.ui import seed
from tests.ui.conftest import csrf_of, make_app


def wait_for_gc(client: FlaskClient) -> dict:
    """Poll the status as the page's script does, until the run is over (bounded)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = client.get("/ui/gc/status").get_json()
        if not status["running"]:
            return status
        time.sleep(0.05)
    raise AssertionError(f"garbage collection still running: {status}")


def test_delete_tag_asks_for_confirmation_then_deletes(client, seeded):
    page = client.get("/ui/r/team/app/-/delete?tag=1.0").get_data(as_text=True)
    assert "Delete tag" in page and "team/app:1.0" in page
    assert "its other tags" not in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.head("/v2/team/app/manifests/1.0").status_code == 200  # not yet

    r = client.post("/ui/r/team/app/-/delete", data={"tag": "1.0", "csrf_token": token})
    assert r.status_code == 303
    assert r.headers["Location"].endswith("/ui/r/team/app")
    html = client.get("/ui/r/team/app").get_data(as_text=True)
    assert "Tag 1.0 deleted from team/app." in html
    assert 'data-tag="1.0"' not in html and 'data-tag="arm"' in html
    assert client.head("/v2/team/app/manifests/1.0").status_code == 404
    # the manifest stays, reachable by digest
    assert client.head(f"/v2/team/app/manifests/{seeded.amd64.digest}").status_code == 200


def test_delete_needs_the_csrf_token(client, seeded):
    csrf_of(client, "/ui/gc")  # the session has a token; the forged ones must not match
    for data in ({"tag": "1.0"}, {"tag": "1.0", "csrf_token": "forged"}):
        r = client.post("/ui/r/team/app/-/delete", data=data)
        assert r.status_code == 403
        assert "did not come from this site" in r.get_data(as_text=True)
    assert client.head("/v2/team/app/manifests/1.0").status_code == 200


def test_delete_manifest_removes_it_with_its_tags(client, seeded):
    page = client.get(f"/ui/r/library/alpine/-/delete?digest={seeded.alpine.digest}")
    html = page.get_data(as_text=True)
    assert "Delete manifest" in html and "its tag" in html and "3.20" in html
    token = csrf_of(client, "/ui/gc")
    r = client.post("/ui/r/library/alpine/-/delete",
                    data={"digest": seeded.alpine.digest, "csrf_token": token})
    assert r.status_code == 303
    # nothing left in the repository: back to the list, where it is gone
    assert r.headers["Location"].endswith("/ui/repositories")
    listing = client.get("/ui/repositories").get_data(as_text=True)
    assert f"Manifest {seeded.alpine.digest} and its tags deleted" in listing
    assert 'href="/ui/r/library/alpine"' not in listing
    assert 'href="/ui/r/team/app"' in listing
    assert client.head(f"/v2/library/alpine/manifests/{seeded.alpine.digest}").status_code == 404


def test_delete_rejects_bad_requests(client, seeded):
    token = csrf_of(client, "/ui/gc")
    assert client.post("/ui/r/team/app/-/delete", data={"csrf_token": token}).status_code == 400
    both = {"csrf_token": token, "tag": "1.0", "digest": seeded.amd64.digest}
    assert client.post("/ui/r/team/app/-/delete", data=both).status_code == 400
    bad = {"csrf_token": token, "digest": "not-a-digest"}
    assert client.post("/ui/r/team/app/-/delete", data=bad).status_code == 400
    missing = {"csrf_token": token, "tag": "nope"}
    assert client.post("/ui/r/team/app/-/delete", data=missing).status_code == 404
    assert client.get("/ui/r/team/app/-/delete?tag=nope").status_code == 404


def test_no_delete_when_deletes_are_disabled(tmp_path: Path):
    app, runtime = make_app(tmp_path, delete_enabled=False)
    client = app.test_client()
    seed.image(client, "team/app", "1.0")
    html = client.get("/ui/r/team/app").get_data(as_text=True)
    assert "/-/delete" not in html
    assert "/-/delete" not in client.get("/ui/r/team/app/-/tag/1.0").get_data(as_text=True)
    token = csrf_of(client, "/ui/gc")
    r = client.post("/ui/r/team/app/-/delete", data={"tag": "1.0", "csrf_token": token})
    assert r.status_code == 405
    assert client.head("/v2/team/app/manifests/1.0").status_code == 200
    runtime.metadata.dispose()


def test_start_gc_and_watch_it_finish(client, seeded, open_app):
    _app, runtime = open_app
    token = csrf_of(client, "/ui/gc")
    client.post("/ui/r/library/alpine/-/delete", data={"tag": "3.20", "csrf_token": token})
    r = client.post("/ui/gc", data={"delete_untagged": "on", "csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"].endswith("/ui/gc")
    assert "Garbage collection started." in client.get("/ui/gc").get_data(as_text=True)
    status = wait_for_gc(client)
    assert status["state"] == "finished", status
    assert status["result"]["manifests_deleted"] == 1
    assert status["result"]["blobs_deleted"] == 2  # alpine's layer and config
    html = client.get("/ui/gc").get_data(as_text=True)
    assert "Finished" in html and "Recent runs" in html
    assert "No garbage collection has run yet." not in html
    overview = client.get("/ui/").get_data(as_text=True)
    assert "No garbage collection has run yet." not in overview
    assert client.head(f"/v2/library/alpine/manifests/{seeded.alpine.digest}").status_code == 404


def test_dry_run_reports_without_deleting(client, seeded):
    token = csrf_of(client, "/ui/gc")
    client.post("/ui/r/library/alpine/-/delete", data={"tag": "3.20", "csrf_token": token})
    client.post("/ui/gc", data={"delete_untagged": "on", "dry_run": "on", "csrf_token": token})
    status = wait_for_gc(client)
    assert status["state"] == "finished" and status["dry_run"] is True
    assert status["result"]["manifests_deleted"] == 1
    html = client.get("/ui/gc").get_data(as_text=True)
    assert "Dry run finished" in html and "would be freed" in html
    assert "No garbage collection has run yet." in html  # dry runs are not recorded
    assert client.head(f"/v2/library/alpine/manifests/{seeded.alpine.digest}").status_code == 200


def test_gc_refused_while_another_runs(client, open_app):
    _app, runtime = open_app
    assert runtime.metadata.try_lock("gc", "someone-else", ttl=600)
    status = client.get("/ui/gc/status").get_json()
    assert status["running"] and status["elsewhere"]
    html = client.get("/ui/gc").get_data(as_text=True)
    assert "started outside this page" in html
    assert re.search(r'id="gc-start"[^>]*disabled', html)
    token = csrf_of(client, "/ui/gc")
    r = client.post("/ui/gc", data={"csrf_token": token}, follow_redirects=True)
    assert "already running" in r.get_data(as_text=True)
    runtime.metadata.unlock("gc", "someone-else")
    assert client.get("/ui/gc/status").get_json()["running"] is False


def test_gc_start_needs_the_csrf_token(client):
    client.get("/ui/gc")
    assert client.post("/ui/gc", data={}).status_code == 403
    assert client.get("/ui/gc/status").get_json()["state"] == "idle"


def test_login_page_says_when_authentication_is_off(client):
    html = client.get("/ui/login").get_data(as_text=True)
    assert "Authentication is not configured" in html
    assert 'type="password"' not in html
    assert "Sign in</a>" not in client.get("/ui/").get_data(as_text=True)


def test_without_auth_gc_may_only_be_started_from_the_registry_host(client, seeded):
    token = csrf_of(client, "/ui/gc")
    remote = {"REMOTE_ADDR": "192.0.2.10"}
    assert client.get("/ui/gc", environ_base=remote).status_code == 403
    r = client.post("/ui/gc", data={"csrf_token": token}, environ_base=remote)
    assert r.status_code == 403
    assert client.get("/ui/gc/status").get_json()["state"] != "running"


def test_ui_can_be_switched_off_and_the_session_key_configured(tmp_path):
    off = make_app(tmp_path / "off", ui={"enabled": False})[0].test_client()
    assert off.get("/ui/").status_code == 404
    assert off.get("/").headers["Location"].endswith("/v2/")
    keyed, _ = make_app(tmp_path / "keyed", ui={"secret_key": "shared-by-all-instances"})
    assert keyed.secret_key == b"shared-by-all-instances"
