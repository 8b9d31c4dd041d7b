"""/api/v1/admin/imports on a live registry: an import run by the command line shows up,
with its figures and problems; admins only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.api_v1.test_admin import PROBLEM, api
from tests.distribution import Store


@pytest.fixture(scope="module")
def finished_run(live, tmp_path_factory):
    """A run over a store holding only broken files (nothing lands in the registry)."""
    store = Store(tmp_path_factory.mktemp("dist"))
    missing = "sha256:" + "ef" * 32
    store.put(f"repositories/imported/app/_layers/sha256/{missing[7:]}/link", missing.encode())
    store.put("repositories/imported/app/_manifests/tags/crashed/current/link", b"")
    out = subprocess.run(
        [sys.executable, "-m", "ociregistry", "import", "distribution", "--json", "--quiet",
         "--config", str(live.config), "--data-dir", str(live.data_dir), str(store.root)],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return store, json.loads(out.stdout.strip().splitlines()[-1])


def test_an_import_run_is_listed_with_its_figures_and_problems(live, http, finished_run):
    store, report = finished_run
    listed = api(live, http, "GET", "/admin/imports").json()
    run = next(r for r in listed["items"] if r["source"] == str(store.root))
    assert run["state"] == "finished" and run["finished_at"] >= run["started_at"]
    assert run["stats"]["problems"] == 2 and run["stats"]["manifests_imported"] == 0
    assert "problems" not in run
    one = api(live, http, "GET", f"/admin/imports/{run['id']}")
    assert one.status_code == 200, one.text
    assert one.json()["problems"] == report["problems"]
    assert {p["kind"] for p in one.json()["problems"]} == {"missing-blob", "empty-link"}
    assert all(p["path"].startswith(str(store.root)) for p in one.json()["problems"])


def test_an_unknown_run_is_a_problem(live, http):
    for run_id in ("999999999", "abc"):
        r = api(live, http, "GET", f"/admin/imports/{run_id}")
        assert r.status_code == 404 and r.headers["Content-Type"] == PROBLEM
        assert r.json()["code"] == "not_found"


@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("puller", 403),
                                             ("robot", 403)])
def test_only_admins_see_imports(live, http, finished_run, who, status):
    for path in ("/admin/imports", "/admin/imports/1"):
        r = api(live, http, "GET", path, live.auth(who))
        assert r.status_code == status and r.headers["Content-Type"] == PROBLEM
