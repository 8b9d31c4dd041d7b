"""Manifest HEAD by a robot token next to the same by an htpasswd user (Basic auth).

Usage: python bench/robot_auth.py [--mode basic|token] [--seconds 5] [--runs 3]
                                  [--connections 16]

Starts `ociregistry serve` (filesystem + SQLite, its default workers) with an
htpasswd user and a robot token, pushes one small image, then runs ApacheBench
HEAD loads on its manifest, alternating user and robot. A user's bcrypt check is
cached per worker (auth/htpasswd.py); a robot's token is checked against its row on
every request (one primary-key read and a SHA-256), so this shows that cost.
With ``--mode token`` both send a bearer token from the built-in token service;
a robot's is checked against its token's row on every request too.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import Request, urlopen

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import ab_head  # noqa: E402

from ociregistry.auth.htpasswd import Htpasswd  # noqa: E402

OCI = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def call(method: str, url: str, auth: str, body: bytes = b"", ctype: str = "") -> int:
    headers = {"Authorization": auth, **({"Content-Type": ctype} if ctype else {})}
    with urlopen(Request(url, data=body or None, method=method, headers=headers),
                 timeout=60) as r:
        return r.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--mode", choices=["basic", "token"], default="basic")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="robot-bench-"))
    server = None
    try:
        users = Htpasswd(str(base / "htpasswd"))
        users.set_password("alice", "alice-pw", cost=12)
        config = base / "config.yml"
        auth = {"htpasswd": str(base / "htpasswd"), "rules": [
            {"users": ["alice"], "actions": ["pull", "push"]},
            {"groups": ["robots"], "actions": ["pull", "push"]}]}
        if args.mode == "token":
            auth["token"] = {"enabled": True, "expiration_seconds": 3600}
        config.write_text(yaml.safe_dump({"auth": auth}))
        common = ["--config", str(config), "--data-dir", str(base / "data")]
        made = json.loads(subprocess.run(
            [sys.executable, "-m", "ociregistry", "token", "create", "bench", "--scope",
             "**:pull", "--json", *common], capture_output=True, text=True, check=True).stdout)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "ociregistry", "serve", "--host",
                                   "127.0.0.1", "--port", str(port), *common],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        alice = basic("alice", "alice-pw")
        robot = basic("robot$bench", made["token"])
        if args.mode == "token":
            def bearer(credentials: str) -> str:
                scope = "repository:bench/app:pull,push"
                with urlopen(Request(f"{url}/auth/token?service=ociregistry&scope={scope}",
                                     headers={"Authorization": credentials}), timeout=60) as r:
                    return "Bearer " + json.load(r)["token"]

            alice, robot = bearer(alice), bearer(robot)
        digests = []
        for payload in (b"{}", b"layer"):
            digest = "sha256:" + hashlib.sha256(payload).hexdigest()
            call("POST", f"{url}/v2/bench/app/blobs/uploads/?digest={digest}", alice, payload)
            digests.append((digest, len(payload)))
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI, "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digests[0][0], "size": digests[0][1]}, "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digests[1][0], "size": digests[1][1]}]}).encode()
        call("PUT", f"{url}/v2/bench/app/manifests/v1", alice, manifest, OCI)
        target = f"{url}/v2/bench/app/manifests/v1"
        for who in (alice, robot):  # warm up: bcrypt caches, connections, the page cache
            ab_head(target, 1, args.connections, {"Authorization": who})
        results: dict[str, list] = {"htpasswd user": [], "robot token": []}
        for _ in range(args.runs):
            for label, who in (("htpasswd user", alice), ("robot token", robot)):
                load = ab_head(target, args.seconds, args.connections, {"Authorization": who})
                if load.errors:
                    raise RuntimeError(f"{label}: {load.errors} failed requests")
                results[label].append(load)
        print(f"manifest HEAD ({args.mode}), {args.connections} connections, {args.runs} runs of "
              f"{args.seconds:g} s each (median of runs)")
        for label, loads in results.items():
            print(f"  {label:14} {statistics.median(x.rps for x in loads):8.0f} req/s   "
                  f"p99 {statistics.median(x.p99_ms for x in loads):6.1f} ms")
        listed = json.loads(subprocess.run(
            [sys.executable, "-m", "ociregistry", "token", "list", "--json", *common],
            capture_output=True, text=True, check=True).stdout)
        print(f"  robot token last_used_at recorded: {listed[0]['last_used_at'] is not None}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
