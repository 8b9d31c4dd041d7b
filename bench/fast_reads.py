"""CPU µs per read in process, the fast route (web/fast_reads.py, fast_listings.py) on and off.

    .venv/bin/python bench/fast_reads.py [--requests 2000] [--rounds 3] [--auth basic]

One data directory (a repository, a manifest under ``latest``, a 1 KiB blob; another
repository with 1,000 tags for the tags list), one app built as
``serve`` builds it (default settings, the access log on, to a file); the fast
route switched on and off in turn (``http.fast_reads``: off is Flask's
route, the build before it), rounds alternating. Each round makes ``--requests``
calls of the WSGI callable per kind and divides the process CPU time by them:
no HTTP server (its 150-200 µs are in "The request floor", docs/performance.md).
``--auth basic``: htpasswd authentication, every request with Basic credentials
(checked once, then from the process's cache), on a repository anonymous callers
may not read. Prints medians and min-max per kind.

    .venv/bin/python bench/fast_reads.py --server [--rounds 3] [--seconds 5]

Under the real server instead: two registries as `python app.py` starts them (the
defaults, gunicorn), one with ``http.fast_reads: false``, loaded in alternating
order (manifest HEAD by tag with ab, 32 connections; GET by tag and by digest,
``GET /v2/`` and the 1,000-tag list with wrk): requests/s, p99 and the CPU of the
server's whole process tree per request. Needs wrk and ApacheBench. Busy machines:
the per-round ratio is the figure.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

MT = "application/vnd.oci.image.manifest.v1+json"
TAGS = 1000


def _app(data: Path, auth: str | None) -> Any:
    from ociregistry.auth.htpasswd import Htpasswd
    from ociregistry.config import load_settings
    from ociregistry.runtime import build_runtime
    from ociregistry.web.app import create_app

    overrides: dict[str, Any] = {"data_dir": str(data)}
    if auth == "basic":
        users = Htpasswd(str(data.parent / "htpasswd"))
        users.set_password("alice", "alice-secret", cost=4)
        overrides["auth"] = {"htpasswd": str(data.parent / "htpasswd"), "rules": [
            {"users": ["alice"], "repositories": ["**"], "actions": ["pull", "push"]}]}
    return create_app(runtime=build_runtime(load_settings(environ={}, overrides=overrides),
                                            migrate=True))


def server(rounds: int, seconds: float) -> int:
    """Fast route on and off under gunicorn, alternating (see the module docstring)."""
    import requests

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.loadgen import ab_head, wrk
    from bench.proctree import tree_cpu_seconds
    from bench.servers import OURS, Registry

    tmp = Path(tempfile.mkdtemp(prefix="fast-reads-server-"))
    rows: dict[tuple[str, bool], list[tuple[float, float, float]]] = {}
    switch = "BENCH_OURS_OCIREGISTRY_HTTP__FAST_READS"
    for n in range(rounds):
        for on in ((True, False) if n % 2 == 0 else (False, True)):
            os.environ[switch] = "true" if on else "false"
            with Registry(OURS, tmp / f"r{n}{int(on)}") as reg:
                config = os.urandom(1024)
                blob = "sha256:" + hashlib.sha256(config).hexdigest()
                requests.post(f"{reg.url}/v2/t/app/blobs/uploads/?digest={blob}",
                              data=config).raise_for_status()
                body = json.dumps({"schemaVersion": 2, "mediaType": MT, "layers": [],
                                   "config": {"mediaType": "application/vnd.oci.image."
                                              "config.v1+json", "digest": blob,
                                              "size": len(config)}}).encode()
                r = requests.put(f"{reg.url}/v2/t/app/manifests/latest", data=body,
                                 headers={"Content-Type": MT})
                r.raise_for_status()
                digest = r.headers["Docker-Content-Digest"]
                with requests.Session() as session:
                    session.post(f"{reg.url}/v2/t/tags/blobs/uploads/?mount={blob}"
                                 "&from=t/app").raise_for_status()
                    for i in range(TAGS):
                        session.put(f"{reg.url}/v2/t/tags/manifests/v{i:04d}", data=body,
                                    headers={"Content-Type": MT}).raise_for_status()
                base = f"{reg.url}/v2/t/app/manifests/"
                for kind, tool, url in (("HEAD by tag", ab_head, base + "latest"),
                                        ("GET by tag", wrk, base + "latest"),
                                        ("GET by digest", wrk, base + digest),
                                        ("GET /v2/", wrk, f"{reg.url}/v2/"),
                                        ("GET tags/list", wrk,
                                         f"{reg.url}/v2/t/tags/tags/list")):
                    cpu = tree_cpu_seconds(reg.proc.pid)
                    result = tool(url, seconds)
                    spent = tree_cpu_seconds(reg.proc.pid) - cpu
                    assert result.errors == 0, result
                    rows.setdefault((kind, on), []).append(
                        (result.rps, result.p99_ms, spent / max(result.requests, 1) * 1e6))
    os.environ.pop(switch, None)
    print(f"gunicorn, fast route off / on ({rounds} rounds x {seconds:g} s; median (min-max))")
    print("| request | req/s off | req/s on | p99 ms off | p99 ms on | CPU µs/req off | on |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for kind in ("HEAD by tag", "GET by tag", "GET by digest", "GET /v2/", "GET tags/list"):
        cells = []
        for i in range(3):
            for on in (False, True):
                values = [row[i] for row in rows[(kind, on)]]
                cells.append(f"{statistics.median(values):.0f} "
                             f"({min(values):.0f}-{max(values):.0f})")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--auth", choices=["none", "basic"], default="none")
    p.add_argument("--server", action="store_true", help="under gunicorn, not in process")
    p.add_argument("--seconds", type=float, default=5, help="--server: seconds per load")
    args = p.parse_args(argv)
    if args.server:
        return server(args.rounds, args.seconds)
    from werkzeug.test import EnvironBuilder

    from ociregistry.web.fast_reads import EXTENSION

    tmp = Path(tempfile.mkdtemp(prefix="fast-manifests-"))
    data = tmp / "data"
    logging.basicConfig(level=logging.INFO, filename=str(tmp / "access.log"))
    app = _app(data, None if args.auth == "none" else args.auth)
    headers = {"Host": "localhost"}
    if args.auth == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(b"alice:alice-secret").decode()
    client = app.test_client()
    config = os.urandom(1024)
    blob = "sha256:" + hashlib.sha256(config).hexdigest()
    assert client.post(f"/v2/t/app/blobs/uploads/?digest={blob}", data=config,
                       headers=headers).status_code == 201
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MT, "layers": [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob,
        "size": len(config)}}).encode()
    r = client.put("/v2/t/app/manifests/latest", data=manifest,
                   headers={**headers, "Content-Type": MT})
    assert r.status_code == 201, r.get_data()
    digest = r.headers["Docker-Content-Digest"]
    # The tags list's repository (the 1,000 tags): the config mounted, then tags.
    assert client.post(f"/v2/t/tags/blobs/uploads/?mount={blob}&from=t/app",
                       headers=headers).status_code == 201
    for i in range(TAGS):
        assert client.put(f"/v2/t/tags/manifests/v{i:04d}", data=manifest,
                          headers={**headers, "Content-Type": MT}).status_code == 201
    kinds = {"HEAD by tag": ("HEAD", "/v2/t/app/manifests/latest"),
             "GET by tag": ("GET", "/v2/t/app/manifests/latest"),
             "GET by digest": ("GET", f"/v2/t/app/manifests/{digest}"),
             "HEAD blob": ("HEAD", f"/v2/t/app/blobs/{blob}"),
             "GET blob (1 KiB)": ("GET", f"/v2/t/app/blobs/{blob}"),
             "HEAD blob miss (404)": ("HEAD", "/v2/t/app/blobs/sha256:" + "1" * 64),
             "GET /v2/": ("GET", "/v2/"),
             f"GET tags/list ({TAGS:,} tags)": ("GET", "/v2/t/tags/tags/list"),
             "GET tags/list?n=100": ("GET", "/v2/t/tags/tags/list?n=100&last=v0500")}
    fast = app.extensions[EXTENSION]
    results: dict[tuple[str, bool], list[float]] = {}

    expected = ["200"]

    def start_response(status: str, _headers: list, _exc: Any = None) -> None:
        assert status.startswith(expected[0]), status

    for _ in range(args.rounds):
        for on in (False, True):
            fast.enabled = on
            for kind, (method, path) in kinds.items():
                expected[0] = "404" if "miss" in kind else "200"
                environ = EnvironBuilder(method=method, path=path, headers=headers,
                                         environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
                for _ in range(50):  # warm
                    body = app(dict(environ), start_response)
                    for _chunk in body:
                        pass
                    body.close()
                started = time.process_time()
                for _ in range(args.requests):
                    body = app(dict(environ), start_response)
                    for _chunk in body:
                        pass
                    body.close()
                spent = time.process_time() - started
                results.setdefault((kind, on), []).append(spent / args.requests * 1e6)
    print(f"CPU µs per request in process ({args.rounds} rounds x {args.requests}, "
          f"auth {args.auth}; median (min-max))")
    print("| request | Flask's route | fast route | fast ÷ Flask |")
    print("|---|--:|--:|--:|")
    for kind in kinds:
        off, on = results[(kind, False)], results[(kind, True)]
        print(f"| {kind} | {statistics.median(off):.0f} ({min(off):.0f}–{max(off):.0f}) | "
              f"{statistics.median(on):.0f} ({min(on):.0f}–{max(on):.0f}) | "
              f"{statistics.median(on) / statistics.median(off):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
