"""The management API at scale: first and last pages of every listing, timed on a real server.

    .venv/bin/python -m bench.api_scale [--repos 10000] [--tags 100000] [--requests 7]

Fills a fresh SQLite data directory's index directly (the rows a push writes:
repositories, blobs and their links, manifests with their blob references and
annotations, tags; one manifest shared by many tags, as CI tags share images),
starts `python app.py` on a free loopback port with Basic authentication (an
admin and a user whose rules grant a few namespaces), and reports the median
wall time of several requests for the first and the last page of each listing,
as each caller. The last page is reached by following `Link: rel="next"` in a
`limit=1000` walk; its cursor is then fetched with `limit=100`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

from bench.servers import free_port
from ociregistry.auth.htpasswd import Htpasswd
from ociregistry.metadata import schema as t
from ociregistry.metadata.catalog_queries import recompute_repository_sizes
from ociregistry.metadata.store import MetadataStore

ROOT = Path(__file__).resolve().parent.parent
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
BIG = "big/monorepo"
USERS = {"admin": "admin-secret", "dev": "dev-secret"}
RULES = [
    {"users": ["admin"], "actions": ["admin"]},
    {"users": ["dev"], "repositories": ["team1/**", "team2/**", "team3/**", BIG],
     "actions": ["pull"]},
]


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _manifest(config: str, layers: list[tuple[str, int]], source: str) -> bytes:
    doc = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 200},
        "layers": [{"mediaType": LAYER, "digest": d, "size": s} for d, s in layers],
        "annotations": {"org.opencontainers.image.source": source},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def fill(store: MetadataStore, repos: int, tags: int, big_manifests: int = 1000) -> None:
    """``repos`` small repositories (one image, two tags) and one with ``tags`` tags."""
    now = time.time()
    base = (_digest("base layer"), 30_000_000)
    config = _digest("shared config")
    blobs = {base[0]: base[1], config: 200}
    repo_rows, manifest_rows, mblob_rows, tag_rows = [], [], [], []
    links: dict[tuple[int, str], float] = {}
    names = [f"team{i % 100}/app{i:05d}" for i in range(repos)] + [BIG]
    for repo_id, name in enumerate(names, start=1):
        repo_rows.append({"id": repo_id, "name": name, "created_at": now - 86400})
        count = big_manifests if name == BIG else 1
        for k in range(count):
            layer = (_digest(f"{name} layer {k}"), 1_000_000 + repo_id * 10 + k)
            blobs[layer[0]] = layer[1]
            payload = _manifest(config, [base, layer], f"https://git.example/{name}")
            manifest_id = len(manifest_rows) + 1
            pushed = now - 86400 + repo_id + k
            manifest_rows.append({
                "id": manifest_id, "repository_id": repo_id,
                "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
                "media_type": OCI_MANIFEST, "size": len(payload), "payload": payload,
                "subject": None, "artifact_type": None,
                "annotations": json.dumps({"org.opencontainers.image.source":
                                           f"https://git.example/{name}"}),
                "created_at": pushed,
            })
            for d in (config, base[0], layer[0]):
                mblob_rows.append({"manifest_id": manifest_id, "digest": d})
                links.setdefault((repo_id, d), pushed)
        first = len(manifest_rows) - count + 1
        tag_names = ([f"v{j // 1000}.{j % 1000}" for j in range(tags)] if name == BIG
                     else ["latest", "v1"])
        for j, tag in enumerate(tag_names):
            tag_rows.append({"repository_id": repo_id, "name": tag,
                             "manifest_id": first + j % count,
                             "updated_at": now - 86400 + repo_id + j * 0.01})
    with store.write() as conn:
        conn.execute(t.blobs.insert(), [{"digest": d, "size": s, "touched_at": now}
                                        for d, s in blobs.items()])
        conn.execute(t.repositories.insert(), repo_rows)
        conn.execute(t.repository_blobs.insert(), [
            {"repository_id": r, "digest": d, "created_at": at} for (r, d), at in links.items()])
        conn.execute(t.manifests.insert(), manifest_rows)
        conn.execute(t.manifest_blobs.insert(), mblob_rows)
        conn.execute(t.tags.insert(), tag_rows)
        conn.execute(t.manifest_annotations.insert(), [
            {"manifest_id": row["id"], "key": k, "value": v}
            for row in manifest_rows for k, v in json.loads(row["annotations"]).items()])
    recompute_repository_sizes(store)  # what pushes maintain (repository_stats)


def start(data: Path, port: int) -> subprocess.Popen:
    htpasswd = Htpasswd(str(data / "htpasswd"))
    for user, password in USERS.items():
        htpasswd.set_password(user, password, cost=4)
    config = {"auth": {"htpasswd": str(data / "htpasswd"), "rules": RULES}}
    (data / "config.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
         str(data), "--config", str(data / "config.yml"), "--workers", "1"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2)
            return proc
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the registry did not start")


def timed(session: requests.Session, url: str, runs: int) -> tuple[float, requests.Response]:
    response = session.get(url, timeout=120)  # warm (password cache, statement cache)
    response.raise_for_status()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        response = session.get(url, timeout=120)
        times.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
    return statistics.median(times), response


def last_cursor(session: requests.Session, url: str) -> str:
    """Walk to the last page (limit 1000) and return the URL that fetches it."""
    page_url = url
    while True:
        response = session.get(page_url, timeout=120)
        response.raise_for_status()
        following = response.links.get("next")
        if following is None:
            return page_url
        page_url = following["url"]


def measure(base: str, runs: int) -> list[tuple[str, str, str, float, int]]:
    api = base + "/api/v1"
    cases: list[tuple[str, str]] = []
    for sort in ("name", "pushed", "size"):
        cases.append((f"repositories sort={sort}", f"{api}/repositories?sort={sort}&limit=100"))
    cases.append(("repositories q=app0", f"{api}/repositories?q=app0&limit=100"))
    cases.append(("repositories glob=team1/*", f"{api}/repositories?glob=team1/*&limit=100"))
    for sort in ("name", "pushed"):
        cases.append((f"tags sort={sort}", f"{api}/repositories/{BIG}/tags?sort={sort}&limit=100"))
    cases.append(("tags prefix=v9", f"{api}/repositories/{BIG}/tags?prefix=v9&limit=100"))
    cases.append(("tags glob=v5.*9", f"{api}/repositories/{BIG}/tags?glob=v5.*9&limit=100"))
    cases.append(("search q=app0012", f"{api}/search?q=app0012&limit=50"))
    cases.append(("search q=https://git.example/team2",
                  f"{api}/search?q=https://git.example/team2&limit=50"))
    cases.append(("search q=org.opencontainers.image.source",
                  f"{api}/search?q=org.opencontainers.image.source&limit=50"))
    cases.append(("namespace usage team1", f"{api}/namespaces/team1/usage"))
    cases.append(("namespace usage big", f"{api}/namespaces/big/usage"))
    out = []
    for user, password in USERS.items():
        session = requests.Session()
        session.auth = (user, password)
        for label, url in cases:
            first_ms, response = timed(session, url, runs)
            items = response.json().get("items")
            count = len(items) if isinstance(items, list) else 1
            out.append((user, label, "first", first_ms, count))
            if response.links.get("next") is None:
                continue
            last_url = last_cursor(session, url.replace("limit=100", "limit=1000"))
            last_url = last_url.replace("limit=1000", "limit=100")
            last_ms, response = timed(session, last_url, runs)
            out.append((user, label, "last", last_ms, len(response.json()["items"])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--tags", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="api-scale-"))
    try:
        store = MetadataStore("sqlite:///" + str(data / "registry.db"))
        store.create_schema()
        began = time.monotonic()
        fill(store, args.repos, args.tags)
        store.dispose()
        print(f"filled {args.repos + 1} repositories, {args.tags} tags in one "
              f"in {time.monotonic() - began:.1f} s", flush=True)
        port = free_port()
        proc = start(data, port)
        try:
            rows = measure(f"http://127.0.0.1:{port}", args.requests)
        finally:
            proc.terminate()
            proc.wait(30)
        print(f"{'caller':6} {'listing':34} {'page':5} {'median ms':>9} {'items':>6}")
        for user, label, which, ms, count in rows:
            print(f"{user:6} {label:34} {which:5} {ms:9.1f} {count:6d}")
        slow = [r for r in rows if r[3] >= 50]
        print(f"{len(slow)} of {len(rows)} over 50 ms")
    finally:
        if args.keep:
            print("data:", data)
        else:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
