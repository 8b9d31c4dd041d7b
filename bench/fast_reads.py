"""CPU µs per manifest or blob read in process, the fast route (web/fast_reads.py) on and off.

    .venv/bin/python bench/fast_reads.py [--requests 2000] [--rounds 3] [--auth basic]

One data directory (a repository, a manifest under ``latest``, a 1 KiB blob), one app built as
``serve`` builds it (default settings, the access log on, to a file); the fast
route switched on and off in turn (``http.fast_reads``: off is Flask's
route, the build before it), rounds alternating. Each round makes ``--requests``
calls of the WSGI callable per kind and divides the process CPU time by them:
no HTTP server (its 150-200 µs are in "The request floor", docs/performance.md).
``--auth basic``: htpasswd authentication, every request with Basic credentials
(checked once, then from the process's cache), on a repository anonymous callers
may not read. Prints medians and min-max per kind.
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--auth", choices=["none", "basic"], default="none")
    args = p.parse_args(argv)
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
    kinds = {"HEAD by tag": ("HEAD", "/v2/t/app/manifests/latest"),
             "GET by tag": ("GET", "/v2/t/app/manifests/latest"),
             "GET by digest": ("GET", f"/v2/t/app/manifests/{digest}"),
             "HEAD blob": ("HEAD", f"/v2/t/app/blobs/{blob}"),
             "GET blob (1 KiB)": ("GET", f"/v2/t/app/blobs/{blob}")}
    fast = app.extensions[EXTENSION]
    results: dict[tuple[str, bool], list[float]] = {}

    def start_response(status: str, _headers: list, _exc: Any = None) -> None:
        assert status.startswith("200"), status

    for _ in range(args.rounds):
        for on in (False, True):
            fast.enabled = on
            for kind, (method, path) in kinds.items():
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
