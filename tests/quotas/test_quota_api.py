"""/api/v1/quotas: create (usage counted once), read, change, delete, recount; bad input
is a problem document; quotas of the configuration file are listed but read-only;
`du --quotas` and the metrics show the same figures."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import requests
import yaml

from tests.quotas import support as s
from tests.server import RegistryProcess


def test_create_counts_what_is_there_then_change_recount_and_delete(registry):
    admin = s.admin_url(registry)
    name = f"qapi{uuid.uuid4().hex[:8]}"
    session = requests.Session()
    layer = os.urandom(2_000)
    config, manifest = s.image(b"api", [layer])
    r = s.push_image(session, registry.url, f"{name}/app", "v1", config, [layer], manifest)
    assert r.status_code == 201, r.text
    # The same layer in a second repository of the namespace counts once.
    assert s.push_blob(session, registry.url, f"{name}/other", layer).status_code == 201

    created = s.create_quota(admin, f"{name}/**", 1 << 20, warning=1 << 19)
    full = len(config) + len(layer) + len(manifest)
    assert created["usage"] == created["blob_bytes"] == full
    assert created["source"] == "api" and created["upload_bytes"] == 0
    assert s.quotas(admin)[f"{name}/**"]["id"] == created["id"]
    url = f"{admin}/api/v1/quotas/{created['id']}"
    assert session.get(url, timeout=s.TIMEOUT).json()["limit"] == 1 << 20

    r = session.post(f"{admin}/api/v1/quotas", json={"namespace": f"{name}/**", "limit": 5},
                     timeout=s.TIMEOUT)
    assert r.status_code == 409 and r.json()["code"] == "conflict"

    r = session.patch(url, json={"limit": 4096, "warning": None}, timeout=s.TIMEOUT)
    assert r.status_code == 200 and r.json()["limit"] == 4096 and r.json()["warning"] is None
    r = session.post(f"{url}/recount", timeout=s.TIMEOUT)
    assert r.status_code == 200 and r.json()["before"] == r.json()["after"] == full

    assert session.delete(url, timeout=s.TIMEOUT).status_code == 204
    assert session.get(url, timeout=s.TIMEOUT).status_code == 404
    assert f"{name}/**" not in s.quotas(admin)


def test_bad_input_is_a_problem(registry):
    admin = s.admin_url(registry)
    base = f"{admin}/api/v1/quotas"
    name = f"qbad{uuid.uuid4().hex[:8]}"
    for body in ({"namespace": name, "limit": 10, "warning": 11},
                 {"namespace": "users/${user}/**", "limit": 10},
                 {"namespace": "a b", "limit": 10},
                 {"namespace": name, "limit": -1},
                 {"namespace": name, "limit": True},
                 {"namespace": name},
                 {"namespace": name, "limit": 1, "extra": 1}):
        r = requests.post(base, json=body, timeout=s.TIMEOUT)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
    for path in ("999999999", "abc", "１"):
        assert requests.get(f"{base}/{path}", timeout=s.TIMEOUT).status_code == 404
        assert requests.delete(f"{base}/{path}", timeout=s.TIMEOUT).status_code == 404


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ociregistry", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_configured_quotas_are_read_only_and_show_in_du_and_metrics(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"quotas": [
        {"namespace": "conf/**", "limit": "5KB", "warning": "50%"}]}))
    server = RegistryProcess(tmp_path / "data", config=config).start()
    try:
        quota = s.quotas(server.url)["conf/**"]
        assert (quota["limit"], quota["warning"], quota["source"]) == (5000, 2500, "config")
        url = f"{server.url}/api/v1/quotas/{quota['id']}"
        assert requests.patch(url, json={"limit": 1}, timeout=s.TIMEOUT).status_code == 409
        assert requests.delete(url, timeout=s.TIMEOUT).status_code == 409
        session = requests.Session()
        assert s.push_blob(session, server.url, "conf/a", os.urandom(3_000)).status_code == 201
        assert s.denied(s.push_blob(session, server.url, "conf/a", os.urandom(3_000)))
        metrics = requests.get(f"{server.url}/metrics", timeout=s.TIMEOUT).text
        assert 'registry_quota_usage_bytes{namespace="conf/**"} 3000.0' in metrics
        assert 'registry_quota_limit_bytes{namespace="conf/**"} 5000.0' in metrics
        assert 'registry_quota_refusals_total{kind="upload",namespace="conf/**"} 1.0' \
            in metrics
        assert 'registry_quota_warnings_total{namespace="conf/**"} 1.0' in metrics
        log = server.log_path.read_text()
        assert "quota refused upload: namespace conf/**" in log
        assert "quota warning: namespace conf/**" in log
        env = server.env
        proc = _cli("du", "--quotas", "--data-dir", str(tmp_path / "data"), env=env)
        assert proc.returncode == 0, proc.stderr
        assert "conf/**" in proc.stdout and "2.9 KiB" in proc.stdout
    finally:
        server.stop()
    # Gone from the file: gone from the index at the next start.
    config.write_text(yaml.safe_dump({"quotas": []}))
    server.start()
    try:
        assert "conf/**" not in s.quotas(server.url)
    finally:
        server.stop()
