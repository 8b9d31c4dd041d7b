"""Push throughput with event endpoints: three receivers against none, in the same run.

    .venv/bin/python -m bench.events_push [--manifests 1000] [--threads 8] [--rounds 2]

Starts `python -m ociregistry serve` on a fresh SQLite data directory for each
variant and round (interleaved, so a busy machine hurts all alike):

- ``off``:  events.enabled: false (no outbox row at all);
- ``none``: events on, no endpoint (the outbox row is written in each push's
  transaction; nothing delivers);
- ``three``: events on, three endpoints (three local receivers answering 204),
  delivery running (in the registry's delivery process, or in its workers for
  versions before it) while the pushes run.

Each round pushes ``--manifests`` distinct manifests (same config and layer,
different annotations) under distinct tags from ``--threads`` threads and reports
manifests per second; for ``three`` it also waits until every receiver has every
push event and reports how long that took after the last push, and how many
requests carried them. Every variant also reports the CPU seconds the registry's
processes used (from /proc), which a busy machine disturbs less than rates, and
the share of the events delivery process (a child of the master since delivery
left the serving workers; 0 before that). The issue's bar: ``three`` at most 5 % below ``none``.

``--batch N`` sets the endpoints' ``batch_max_events`` (default 0: the configured
``events.batch.max_events``; 1: one event per request, as before batching).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

from bench.servers import free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = "bench/events"


class Sink:
    """A receiver that counts manifest.pushed events (several per request when batched)
    and requests."""

    def __init__(self, keep_alive: bool = False) -> None:
        self.count = 0
        self.requests = 0
        self.marker = b'"manifest.pushed"'  # what one event looks like in a body
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0 closes every connection; 1.1 keeps it for the next request
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    owner.count += body.count(owner.marker)
                    owner.requests += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start(data: Path, settings: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = data / "config.yml"
    config.write_text(yaml.safe_dump(settings))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ociregistry", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--data-dir", str(data / "data"), "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/v2/", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("registry did not start")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of ``pid`` and its children (gunicorn's workers and
    the events delivery process), and of the delivery process alone."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = delivery = 0.0
    pids = [pid] + [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    for one in pids:
        try:
            head, tail = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        used = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        total += used
        if head.endswith("(ocireg-events"):  # events/process.py names it so
            delivery += used
    return total, delivery


def blob(url: str, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.post(f"{url}/v2/{REPO}/blobs/uploads/", params={"digest": digest}, data=data)
    r.raise_for_status()
    return {"digest": digest, "size": len(data)}


def push_all(url: str, count: int, threads: int) -> float:
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(url, b"{}")}
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob(url, b"x" * 1024)}
    session = threading.local()

    def one(i: int) -> None:
        http = getattr(session, "http", None) or requests.Session()
        session.http = http
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                           "layers": [layer], "annotations": {"n": str(i)}}).encode()
        r = http.put(f"{url}/v2/{REPO}/manifests/t{i}", data=body,
                     headers={"Content-Type": OCI_MANIFEST})
        if r.status_code != 201:
            raise RuntimeError(r.text)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - started)


def run(variant: str, count: int, threads: int, sinks: list[Sink], batch: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"bench-events-{variant}-"))
    events: dict = {"enabled": variant != "off", "poll_interval_seconds": 0.5}
    if variant == "three":
        events["endpoints"] = [{"name": f"sink{i}", "url": s.url,
                                "actions": ["manifest.pushed"]} for i, s in enumerate(sinks)]
        if batch:  # (left out by default: the bench also runs against older versions)
            for endpoint in events["endpoints"]:
                endpoint["batch_max_events"] = batch
    before = [s.count for s in sinks]
    requests_before = sum(s.requests for s in sinks)
    proc, url = start(root, {"events": events})
    try:
        cpu_before, delivery_before = cpu_seconds(proc.pid)
        rate = push_all(url, count, threads)
        cpu_after, delivery_after = cpu_seconds(proc.pid)
        cpu, delivery_cpu = cpu_after - cpu_before, delivery_after - delivery_before
        pushed_at = time.monotonic()
        drained = total_cpu = None
        if variant == "three":
            while any(s.count - b < count for s, b in zip(sinks, before, strict=True)):
                if time.monotonic() - pushed_at > 600:
                    raise RuntimeError("events not delivered within 10 minutes")
                time.sleep(0.1)
            drained = time.monotonic() - pushed_at
            total_cpu = cpu_seconds(proc.pid)[0] - cpu_before
        return {"variant": variant, "manifests_per_s": round(rate, 1),
                "registry_cpu_s": round(cpu, 2),
                "delivery_process_cpu_s": round(delivery_cpu, 2),
                "delivered_all_after_s": None if drained is None else round(drained, 2),
                "registry_cpu_until_delivered_s": None if total_cpu is None
                else round(total_cpu, 2),
                "requests": sum(s.requests for s in sinks) - requests_before}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=0)
    args = parser.parse_args()
    sinks = [Sink() for _ in range(3)]
    results: dict[str, list[float]] = {"off": [], "none": [], "three": []}
    cpu: dict[str, list[float]] = {"off": [], "none": [], "three": []}
    for round_ in range(args.rounds):
        for variant in ("off", "none", "three") if round_ % 2 == 0 else ("three", "none", "off"):
            result = run(variant, args.manifests, args.threads, sinks, args.batch)
            print(json.dumps({"round": round_, **result}), flush=True)
            results[variant].append(result["manifests_per_s"])
            cpu[variant].append(result["registry_cpu_s"])
    median = {k: statistics.median(v) for k, v in results.items()}
    print(json.dumps({
        "median_manifests_per_s": median,
        "three_vs_none_percent": round(100 * (median["three"] / median["none"] - 1), 1),
        "none_vs_off_percent": round(100 * (median["none"] / median["off"] - 1), 1),
        "median_registry_cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
