"""Quick single-registry figures: blob push/pull MiB/s and manifest HEAD requests/s.

Usage: python bench/quick.py [--size-mib 256] [--seconds 10]
Needs ApacheBench (Debian: apache2-utils) for the HEAD load.
Starts `python app.py` on a free port with a temporary data dir, measures, stops it.
The side-by-side comparison with CNCF Distribution is a separate harness.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.server import RegistryProcess  # noqa: E402

CHUNK = 8 << 20


def _blob(size: int, seed: int = 0) -> tuple[Path, str]:
    """A blob of fresh content (distinct per seed), so every push stores new bytes."""
    path = Path(tempfile.mkdtemp()) / "blob"
    h = hashlib.sha256()
    block = os.urandom(1 << 20) + seed.to_bytes(8, "big")
    with open(path, "wb") as f:
        for i in range(size >> 20):
            data = block[:(1 << 20) - 8] + i.to_bytes(8, "big")
            f.write(data)
            h.update(data)
    return path, "sha256:" + h.hexdigest()


def push_monolithic(url: str, path: Path, digest: str) -> float:
    start = time.perf_counter()
    with open(path, "rb") as f:
        r = requests.post(f"{url}/v2/bench/mono/blobs/uploads/", params={"digest": digest}, data=f)
    assert r.status_code == 201, r.text
    return time.perf_counter() - start


def push_chunked(url: str, path: Path, digest: str) -> float:
    s = requests.Session()
    start = time.perf_counter()
    r = s.post(f"{url}/v2/bench/chunked/blobs/uploads/")
    location = url + r.headers["Location"]
    offset = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            r = s.patch(location, data=chunk, headers={
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Type": "application/octet-stream"})
            assert r.status_code == 202, r.text
            location = url + r.headers["Location"]
            offset += len(chunk)
    r = s.put(location, params={"digest": digest})
    assert r.status_code == 201, r.text
    return time.perf_counter() - start


def pull(url: str, digest: str) -> float:
    start = time.perf_counter()
    with requests.get(f"{url}/v2/bench/mono/blobs/{digest}", stream=True) as r:
        for _ in r.iter_content(1 << 20):
            pass
    return time.perf_counter() - start


def manifest_head_rps(url: str, seconds: float, connections: int = 32) -> float:
    config = b"{}"
    cdigest = "sha256:" + hashlib.sha256(config).hexdigest()
    requests.post(f"{url}/v2/bench/mono/blobs/uploads/", params={"digest": cdigest}, data=config)
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": cdigest, "size": 2}, "layers": []})
    requests.put(f"{url}/v2/bench/mono/manifests/latest", data=manifest,
                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    # wrk waits for a body after HEAD; ApacheBench (-i) sends real HEAD requests.
    if shutil.which("ab"):
        out = subprocess.run(
            ["ab", "-i", "-k", "-c", str(connections), "-t", str(int(seconds)), "-n", "10000000",
             f"{url}/v2/bench/mono/manifests/latest"],
            capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Requests per second:"):
                return float(line.split()[3])
    count = [0]
    stop = time.perf_counter() + seconds

    def worker() -> None:
        s = requests.Session()
        while time.perf_counter() < stop:
            s.head(f"{url}/v2/bench/mono/manifests/latest")
            count[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count[0] / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib << 20
    base = Path(tempfile.mkdtemp())
    server = RegistryProcess(base / "data").start()
    try:
        for run in range(args.runs):
            path, digest = _blob(size, 2 * run)
            mono = size / push_monolithic(server.url, path, digest) / 2**20
            pulled = size / pull(server.url, digest) / 2**20
            shutil.rmtree(path.parent, ignore_errors=True)
            path, digest = _blob(size, 2 * run + 1)
            chunked = size / push_chunked(server.url, path, digest) / 2**20
            shutil.rmtree(path.parent, ignore_errors=True)
            print(f"run {run + 1}: push monolithic {mono:.0f} MiB/s, chunked {chunked:.0f} MiB/s,"
                  f" pull {pulled:.0f} MiB/s", flush=True)
        rps = manifest_head_rps(server.url, args.seconds)
        print(f"manifest HEAD: {rps:.0f} requests/s (32 connections, {args.seconds:.0f}s)")
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
