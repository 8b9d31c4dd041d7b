"""Pull-through cache: this registry's mirror side by side with Distribution's proxy mode.

    .venv/bin/python bench/mirror_pull.py [--runs 3] [--layers 10] [--layer-mib 8] [--pulls 100]

One upstream, a plain CNCF Distribution (Debian ``docker-registry`` 2.8.2, access log
on) on a loopback port, holds a ``--layers``-layer image ``library/bench:v1``. Each run
starts, with empty caches, both pull-through caches in front of it:

- ours: ``python -m ociregistry serve`` with one upstream (``mirror.upstreams``, the
  image pulled by its path prefix ``hub/library/bench``, tag TTL one hour);
- distribution: ``docker-registry serve`` with ``proxy: remoteurl:`` (pulled as
  ``library/bench``), as Distribution mirrors exactly one upstream.

and measures, one cache after the other (the order alternates between runs):

- first pull (cold cache): time to the first byte of the manifest, of the first layer,
  and the whole pull (manifest by tag, config, layers three at a time as docker does);
- warm pull: the same pull again, everything cached; for ours, beside it, a normal
  pull of an image of the same shape pushed to the cache itself (``local/bench``);
- upstream requests per ``--pulls`` pulls of the same tag (manifest GET by tag, as
  Docker Hub counts pulls), counted in the upstream's access log.

Before the measured pull each cache has answered a few requests and pulled another
image (``library/warmup``) from the same upstream: a running cache missing an image,
not a process's very first request.

Prints the median of the runs (min-max beside it). The bytes are checked: every blob
is re-hashed as it streams in. Nothing is installed; ports are free loopback ports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.servers import free_port  # noqa: E402

DISTRIBUTION_BIN = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])
REQUEST = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (/v2/\S+) HTTP/[\d.]+" (\d{3})')
REPO, TAG = "library/bench", "v1"
LOCAL_REPO = "local/bench"  # pushed to our cache itself: the normal pull beside the warm one
WARMUP_REPO = "library/warmup"  # another image, filled before the measured one


class Server:
    """A process on a free loopback port with its own directory; log kept in a file."""

    def __init__(self, name: str, workdir: Path, argv: list[str], port: int) -> None:
        self.name, self.dir, self.argv, self.port = name, workdir, argv, port
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.dir)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/v2/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log_size(self) -> int:
        return self.log.stat().st_size

    def requests_since(self, mark: int) -> int:
        """/v2/ requests (not the /v2/ ping) logged after byte ``mark``."""
        time.sleep(1.0)  # logged when the response ends, a moment after the client has it
        with open(self.log, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return sum(1 for m in REQUEST.finditer(text) if m.group(2) != "/v2/")


def distribution(name: str, workdir: Path, proxy: str | None = None) -> Server:
    workdir.mkdir(parents=True)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "root")},
                    "delete": {"enabled": True}, "cache": {"blobdescriptor": "inmemory"}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "bench"},
    }
    if proxy:
        config["proxy"] = {"remoteurl": proxy}
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    return Server(name, workdir, [DISTRIBUTION_BIN, "serve", str(workdir / "config.yml")], port)


def ours(workdir: Path, upstream: str) -> Server:
    workdir.mkdir(parents=True)
    port = free_port()
    config = {"mirror": {"upstreams": [
        {"name": "hub", "url": upstream, "hosts": ["docker.io"], "default": True,
         "tag_ttl": 3600}]}}
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "ociregistry", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--data-dir", str(workdir / "data"),
            "--config", str(workdir / "config.yml")]
    return Server("ours", workdir, argv, port)


# -- the upstream's image --------------------------------------------------------------
def push_blob(url: str, data: bytes, repo: str = REPO) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=60)
    r.raise_for_status()
    location = requests.compat.urljoin(url, r.headers["Location"])
    r = requests.put(location, params={"digest": digest}, data=data, timeout=600,
                     headers={"Content-Type": "application/octet-stream"})
    r.raise_for_status()
    return {"digest": digest, "size": len(data)}


def seed(url: str, layers: int, layer_mib: int, repo: str = REPO) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    descriptors = [push_blob(url, os.urandom(layer_mib << 20), repo) for _ in range(layers)]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **push_blob(url, config, repo)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **d}
                   for d in descriptors],
    }).encode()
    r = requests.put(f"{url}/v2/{repo}/manifests/{TAG}", data=manifest, timeout=60,
                     headers={"Content-Type": OCI_MANIFEST})
    r.raise_for_status()


# -- one pull as a client does it ------------------------------------------------------
def fetch_blob(session: requests.Session, url: str, digest: str) -> float:
    """Streams and re-hashes a blob; returns seconds to its first byte."""
    started = time.perf_counter()
    first = None
    h = hashlib.sha256()
    with session.get(f"{url}/blobs/{digest}", stream=True, timeout=600) as r:
        r.raise_for_status()
        for chunk in r.iter_content(1 << 20):
            if first is None:
                first = time.perf_counter() - started
            h.update(chunk)
    if "sha256:" + h.hexdigest() != digest:
        raise AssertionError(f"blob {digest} came back different")
    return first or 0.0


def pull(base: str) -> dict[str, float]:
    """Manifest by tag, then config and layers (three at a time)."""
    session = requests.Session()
    started = time.perf_counter()
    with session.get(f"{base}/manifests/{TAG}", headers={"Accept": ACCEPT}, stream=True,
                     timeout=600) as r:
        r.raise_for_status()
        manifest_ttfb = time.perf_counter() - started
        manifest = json.loads(r.content)
    digests = [manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])]
    with ThreadPoolExecutor(3) as pool:
        ttfbs = list(pool.map(lambda d: fetch_blob(requests.Session(), base, d), digests))
    return {"manifest_ttfb": manifest_ttfb, "first_layer_ttfb": ttfbs[1],
            "total": time.perf_counter() - started}


def tag_pulls(base: str, n: int) -> None:
    session = requests.Session()
    for _ in range(n):
        r = session.get(f"{base}/manifests/{TAG}", headers={"Accept": ACCEPT}, timeout=60)
        r.raise_for_status()


def measure(cache: Server, base: str, upstream: Server, pulls: int,
            local: tuple[int, int] | None = None) -> dict[str, float]:
    """``local`` (layers, MiB): also pull an image of that shape pushed to the cache
    itself (ours only: Distribution's proxy mode takes no pushes), "a normal pull"."""
    # A running cache, not a starting one: every worker has answered a few requests and
    # filled another image from the upstream (a process's first fill pays one-time costs:
    # its upstream connection, first-use compilation of its statements).
    session = requests.Session()
    for _ in range(16):
        session.get(cache.url + "/v2/", timeout=30).raise_for_status()
    for _ in range(4):  # the requests spread over the workers
        pull(base.replace(REPO, WARMUP_REPO))
    cold = pull(base)
    warm = pull(base)
    mark = upstream.log_size()
    tag_pulls(base, pulls)
    result = {"cold_manifest_ttfb": cold["manifest_ttfb"],
              "cold_first_layer_ttfb": cold["first_layer_ttfb"], "cold_total": cold["total"],
              "warm_total": warm["total"],
              "upstream_requests": float(upstream.requests_since(mark))}
    if local is not None:
        seed(cache.url, *local, repo=LOCAL_REPO)
        pull(f"{cache.url}/v2/{LOCAL_REPO}")  # as warm as the mirror's copy
        result["normal_pull_total"] = pull(f"{cache.url}/v2/{LOCAL_REPO}")["total"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--layer-mib", type=int, default=8)
    parser.add_argument("--pulls", type=int, default=100)
    args = parser.parse_args()
    if not shutil.which(DISTRIBUTION_BIN):
        sys.exit("apt-get install docker-registry (Distribution 2.8.2) first")
    work = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    results: dict[str, list[dict[str, float]]] = {"ours": [], "distribution": []}
    upstream = distribution("upstream", work / "upstream").start()
    try:
        seed(upstream.url, args.layers, args.layer_mib)
        seed(upstream.url, 1, 1, repo=WARMUP_REPO)
        for run in range(args.runs):
            order = ["ours", "distribution"] if run % 2 == 0 else ["distribution", "ours"]
            for kind in order:
                where = work / f"run{run}-{kind}"
                if kind == "ours":
                    cache, base = ours(where, upstream.url), f"/v2/hub/{REPO}"
                else:
                    cache = distribution("proxy", where, proxy=upstream.url)
                    base = f"/v2/{REPO}"
                cache.start()
                try:
                    local = (args.layers, args.layer_mib) if kind == "ours" else None
                    results[kind].append(measure(cache, cache.url + base, upstream,
                                                 args.pulls, local))
                finally:
                    cache.stop()
                print(f"run {run + 1} {kind}: {results[kind][-1]}", file=sys.stderr)
    finally:
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results, args)


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    print(f"\n{args.layers} layers x {args.layer_mib} MiB, median of {args.runs} runs "
          f"(min-max); upstream requests per {args.pulls} tag pulls")
    print(f"{'measure':<24}{'ours':>24}{'distribution':>24}")
    for key in results["ours"][0]:
        cells = []
        for kind in ("ours", "distribution"):
            values = [r[key] for r in results[kind] if key in r]
            if not values:
                cells.append("-")
                continue
            unit = "" if key == "upstream_requests" else " s"
            fmt = "{:.0f}" if key == "upstream_requests" else "{:.3f}"
            cells.append(f"{fmt.format(statistics.median(values))}{unit} "
                         f"({fmt.format(min(values))}-{fmt.format(max(values))})")
        print(f"{key:<24}{cells[0]:>24}{cells[1]:>24}")


if __name__ == "__main__":
    main()
