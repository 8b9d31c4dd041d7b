"""Metrics after real traffic, across several worker processes."""

from __future__ import annotations

import os
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import make_image, put_manifest, sha256
from tests.server import RegistryProcess, free_port


def scrape(url: str, auth: tuple[str, str] | None = None) -> dict[tuple, float]:
    r = requests.get(url, auth=auth)
    assert r.status_code == 200, r.text
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def three_workers(tmp_path):
    server = RegistryProcess(tmp_path / "data", workers=3).start()
    yield server
    server.stop()


def test_request_counts_are_summed_over_all_workers(three_workers):
    url = three_workers.url
    before = scrape(url + "/metrics")
    # A new connection per request: the kernel spreads them over the workers.
    for _ in range(30):
        assert requests.get(url + "/v2/", headers={"Connection": "close"}).status_code == 200
    after = scrape(url + "/metrics")
    key = dict(route="/v2/", method="GET", status="200")
    assert value(after, "registry_http_requests_total", **key) - value(
        before, "registry_http_requests_total", **key
    ) == 30
    count = value(after, "registry_http_request_duration_seconds_count", route="/v2/", method="GET")
    assert count >= 30


def settled(url: str) -> dict:
    """A scrape once the byte counters have stopped moving: they are updated when a
    response has gone out (call_on_close), which may be just after its client has it."""
    keys = ("registry_http_received_bytes_total", "registry_http_sent_bytes_total")
    last = scrape(url + "/metrics")
    steady = 0
    deadline = time.monotonic() + 30
    while steady < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = scrape(url + "/metrics")
        same = all(value(now, k) == value(last, k) for k in keys)
        steady = steady + 1 if same else 0
        last = now
    return last


def test_push_and_pull_show_in_bytes_counts_and_stored_objects(three_workers):
    url = three_workers.url
    repo = "metrics/app"
    manifest = make_image(url, repo, layers=3)
    assert put_manifest(url, repo, "v1", manifest).status_code == 201
    assert put_manifest(url, repo, "v2", manifest).status_code == 201
    layer = manifest["layers"][0]
    before = settled(url)
    blob = os.urandom(200_000)
    r = requests.post(
        f"{url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob
    )
    assert r.status_code == 201
    pulled = requests.get(f"{url}/v2/{repo}/blobs/{layer['digest']}").content

    def counted() -> tuple[dict, float, float]:
        after = scrape(url + "/metrics")
        return (after,
                value(after, "registry_http_received_bytes_total")
                - value(before, "registry_http_received_bytes_total"),
                value(after, "registry_http_sent_bytes_total")
                - value(before, "registry_http_sent_bytes_total"))

    # Bytes are counted once a response has gone out (call_on_close), which may be just
    # after the client has it: give the workers a moment, then assert.
    deadline = time.monotonic() + 30
    after, received, sent = counted()
    while (received < len(blob) or sent < len(pulled)) and time.monotonic() < deadline:
        time.sleep(0.1)
        after, received, sent = counted()
    assert received == len(blob)
    assert sent >= len(pulled) == layer["size"]
    assert value(after, "registry_stored_objects", kind="repositories") == 1
    assert value(after, "registry_stored_objects", kind="manifests") == 1
    assert value(after, "registry_stored_objects", kind="tags") == 2
    assert value(after, "registry_stored_objects", kind="blobs") == 5  # config, 3 layers, blob
    total = manifest["config"]["size"] + sum(x["size"] for x in manifest["layers"]) + len(blob)
    assert value(after, "registry_storage_bytes") == total
    uploads = value(
        after, "registry_http_requests_total",
        route="/v2/{name}/blobs/uploads/{id}", method="POST", status="201",
    )
    assert uploads >= 5


def test_the_disk_flushes_of_a_push_are_counted(three_workers):
    # storage.fsync and storage.flush_ahead (defaults): a 9 MiB PATCH starts flushes of
    # its file while it is written, and the PUT's publication waits for the last one
    url = three_workers.url
    before = scrape(url + "/metrics")
    data = os.urandom(9 << 20)
    r = requests.post(f"{url}/v2/metrics/flush/blobs/uploads/")
    assert r.status_code == 202, r.text
    r = requests.patch(url + r.headers["Location"], data=data,
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    r = requests.put(url + r.headers["Location"], params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    after = scrape(url + "/metrics")

    def grew(name: str) -> float:
        return value(after, name) - value(before, name)

    # one at 4 MiB, and one at 8 unless the first is still running then
    assert grew("registry_storage_flushes_ahead_total") >= 1
    assert grew("registry_storage_publish_flush_seconds_count") == 1
    assert grew("registry_storage_publish_flush_seconds_sum") > 0


def test_gc_runs_and_freed_bytes_are_counted(three_workers):
    url = three_workers.url
    r = requests.post(url + "/v2/gc")
    assert r.status_code == 200
    samples = scrape(url + "/metrics")
    assert value(samples, "registry_gc_runs_total", outcome="success") == 1
    assert value(samples, "registry_gc_duration_seconds_count") == 1


def test_metrics_on_their_own_address_with_basic_auth(tmp_path):
    port = free_port()
    env = {
        "OCIREGISTRY_METRICS__ADDRESS": f"127.0.0.1:{port}",
        "OCIREGISTRY_METRICS__USERNAME": "prom",
        "OCIREGISTRY_METRICS__PASSWORD": "s3cret",
    }
    server = RegistryProcess(tmp_path / "data", env=env).start()
    try:
        for _ in range(5):
            requests.get(server.url + "/v2/")
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        denied = requests.get(metrics_url)
        assert denied.status_code == 401
        assert denied.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(metrics_url, auth=("prom", "wrong")).status_code == 401
        samples = scrape(metrics_url, auth=("prom", "s3cret"))
        assert value(
            samples, "registry_http_requests_total", route="/v2/", method="GET", status="200"
        ) >= 5
        # the main port asks for the same credentials
        assert requests.get(server.url + "/metrics").status_code == 401
        assert requests.get(server.url + "/metrics", auth=("prom", "s3cret")).status_code == 200
    finally:
        server.stop()
