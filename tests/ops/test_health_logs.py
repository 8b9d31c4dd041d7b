"""Health endpoints, request ids and the access log."""

from __future__ import annotations

import json
import time

import requests

from ociregistry import metrics
from ociregistry.config import load_settings
from ociregistry.runtime import build_runtime
from ociregistry.web.app import create_app
from tests.helpers import push_blob
from tests.server import RegistryProcess


def _client(tmp_path, **overrides):
    settings = load_settings(overrides={"data_dir": str(tmp_path / "data"), **overrides})
    runtime = build_runtime(settings, migrate=True)
    return create_app(runtime=runtime).test_client(), runtime


def test_healthz_and_readyz_answer_when_all_is_well(registry):
    assert requests.get(registry.url + "/healthz").json() == {"status": "ok"}
    r = requests.get(registry.url + "/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


def test_readyz_is_503_when_storage_is_unusable(tmp_path):
    client, runtime = _client(tmp_path, http={"readiness_cache_seconds": 0})
    assert client.get("/readyz").status_code == 200
    uploads = tmp_path / "data" / "uploads"
    uploads.rename(tmp_path / "data" / "uploads.away")
    uploads.write_text("not a directory")
    before = metrics.READINESS_FAILURES.labels("storage")._value.get()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert metrics.READINESS_FAILURES.labels("storage")._value.get() == before + 1
    assert r.json["status"] == "unavailable"
    assert r.json["reason"].startswith("storage:")
    assert client.get("/healthz").status_code == 200  # the process itself is alive


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path):
    client, runtime = _client(tmp_path, http={"readiness_cache_seconds": 0})
    assert client.get("/readyz").status_code == 200
    (tmp_path / "data" / "registry.db").unlink()
    (tmp_path / "data" / "registry.db").mkdir()  # a directory where the database was
    runtime.metadata.dispose()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json["reason"].startswith("database:")


def test_readyz_writes_to_the_database_not_only_reads(tmp_path):
    # A database that answers SELECT 1 but refuses writes (a replica, a read-only
    # mount) cannot take a push: not ready, and the reason says so.
    _client(tmp_path)  # creates and migrates the database
    db = tmp_path / "data" / "registry.db"
    client, runtime = _client(tmp_path, http={"readiness_cache_seconds": 0},
                              database={"url": f"sqlite:///file:{db}?mode=ro&uri=true"})
    runtime.metadata.check()  # reads work
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json["reason"].startswith("database:")
    assert "readonly" in r.json["reason"].replace("-", "").replace(" ", "").lower()


def test_readyz_answers_from_its_last_probe_for_a_few_seconds(tmp_path):
    client, runtime = _client(tmp_path, http={"readiness_cache_seconds": 2})
    assert client.get("/readyz").status_code == 200
    uploads = tmp_path / "data" / "uploads"
    uploads.rename(tmp_path / "data" / "uploads.away")
    uploads.write_text("not a directory")
    # The store broke just after a probe: the next probe, at most 2 s later, sees it.
    deadline = time.monotonic() + 60
    while (r := client.get("/readyz")).status_code == 200:
        assert time.monotonic() < deadline, "readiness never noticed the broken storage"
        time.sleep(0.1)
    assert r.status_code == 503 and r.json["reason"].startswith("storage:")
    uploads.unlink()
    (tmp_path / "data" / "uploads.away").rename(uploads)
    while (r := client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, f"readiness never recovered: {r.json}"
        time.sleep(0.1)


def test_request_id_is_echoed_or_made(registry):
    r = requests.get(registry.url + "/v2/", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    made = requests.get(registry.url + "/v2/").headers["X-Request-ID"]
    assert len(made) == 32 and made != "abc-123"
    # a hostile id is replaced, not reflected
    r = requests.get(registry.url + "/v2/", headers={"X-Request-ID": "x" * 500})
    assert r.headers["X-Request-ID"] != "x" * 500


def _log_lines(server: RegistryProcess, needle: str) -> list[str]:
    for _ in range(100):
        lines = [line for line in server.log_path.read_text().splitlines() if needle in line]
        if lines:
            return lines
        time.sleep(0.1)
    return []


def test_access_log_in_json(tmp_path):
    server = RegistryProcess(tmp_path / "data", env={"OCIREGISTRY_LOG__FORMAT": "json"}).start()
    try:
        r = requests.get(
            server.url + "/v2/some/repo/tags/list?password=hunter2",
            headers={"X-Request-ID": "req-json-1", "Authorization": "Bearer sekret-token"},
        )
        assert r.status_code == 404
        lines = _log_lines(server, "req-json-1")
    finally:
        server.stop()
    assert lines, server.log_path.read_text()[-2000:]
    entry = json.loads(lines[0])
    assert entry["method"] == "GET"
    assert entry["path"] == "/v2/some/repo/tags/list"
    assert entry["status"] == 404
    assert entry["route"] == "/v2/{name}/tags/list"
    assert entry["client"] == "127.0.0.1"
    assert entry["user"] == "-"
    assert entry["duration_ms"] >= 0
    log = server.log_path.read_text()
    assert "hunter2" not in log and "sekret-token" not in log


def test_access_log_in_text_by_default(registry):
    requests.put(
        registry.url + "/v2/text/log/manifests/v1",
        data=b"{}",
        headers={"X-Request-ID": "req-text-1", "Content-Type": "application/json"},
    )
    lines = _log_lines(registry, "req-text-1")
    assert lines
    assert " PUT /v2/text/log/manifests/v1 400 2 " in lines[0]


def test_blob_gets_sent_with_sendfile_are_logged_and_counted(registry):
    # werkzeug passes a file body straight to the server, past the iterator that runs
    # the response's close callbacks: the access log and metrics must still see it.
    data = b"logged blob " * 5000
    digest = push_blob(registry.url, "logs/blob", data)
    r = requests.get(f"{registry.url}/v2/logs/blob/blobs/{digest}",
                     headers={"X-Request-ID": "req-blob-get-1"})
    assert r.status_code == 200 and r.content == data
    lines = _log_lines(registry, "req-blob-get-1")
    assert lines, registry.log_path.read_text()[-2000:]
    assert f" GET /v2/logs/blob/blobs/{digest} 200 0 {len(data)} " in lines[0]
    text = requests.get(registry.url + "/metrics").text
    counted = [line for line in text.splitlines()
               if line.startswith("registry_http_requests_total{")
               and 'route="/v2/{name}/blobs/{digest}"' in line and 'method="GET"' in line
               and 'status="200"' in line]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1, counted
