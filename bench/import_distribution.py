"""Throughput of `ociregistry import distribution` on a generated Distribution store.

Writes a store in Distribution's filesystem layout (no Distribution needed):
``--repos`` repositories of one image each, ``--layers`` layers of ``--layer-mib``
MiB, a third of the layers shared by every repository. Then times, each into a
fresh data directory: a copy run, a second (incremental) run that finds
everything present, and a ``--link`` run. Prints MiB/s and manifests/s.

    .venv/bin/python bench/import_distribution.py --repos 4 --layers 3 --layer-mib 8
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
import time
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def write_store(root: Path, repos: int, layers: int, layer_mib: int) -> int:
    """The store; returns the bytes of distinct blobs."""
    v2 = root / "docker" / "registry" / "v2"

    def blob(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = v2 / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return digest

    def link(rel: str, digest: str) -> None:
        path = v2 / "repositories" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(digest)

    total = 0
    shared = [os.urandom(layer_mib << 20) for _ in range(max(1, layers // 3))]
    total += sum(len(s) for s in shared)
    for r in range(repos):
        name = f"bench/repo{r}"
        config = json.dumps({"architecture": "amd64", "os": "linux", "r": r}).encode()
        own = [os.urandom(layer_mib << 20) for _ in range(layers - len(shared))]
        total += sum(len(o) for o in own) + len(config)
        descriptors = []
        for data in [*shared, *own]:
            digest = blob(data)
            link(f"{name}/_layers/sha256/{digest[7:]}/link", digest)
            descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": digest, "size": len(data)})
        config_digest = blob(config)
        link(f"{name}/_layers/sha256/{config_digest[7:]}/link", config_digest)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest, "size": len(config)}, "layers": descriptors}).encode()
        m = blob(manifest)
        link(f"{name}/_manifests/revisions/sha256/{m[7:]}/link", m)
        link(f"{name}/_manifests/tags/latest/current/link", m)
    return total


def run(data_dir: Path, store: Path, *extra: str) -> tuple[float, dict]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "ociregistry", "import", "distribution", "--quiet", "--json",
         "--data-dir", str(data_dir), str(store), *extra],
        capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--layer-mib", type=int, default=16)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        total = write_store(base / "dist", args.repos, args.layers, args.layer_mib)
        mib = total / (1 << 20)
        print(f"store: {args.repos} repositories, {mib:.0f} MiB of distinct blobs")
        for label, data_dir, extra in (("copy", base / "a", ()), ("again", base / "a", ()),
                                       ("--link", base / "b", ("--link",))):
            seconds, report = run(data_dir, base / "dist", *extra)
            print(f"{label:>7}: {seconds:6.2f} s  {mib / seconds:8.1f} MiB/s  "
                  f"{args.repos / seconds:7.1f} manifests/s  copied {report['blobs_copied']}"
                  f" linked {report['blobs_linked']} present {report['blobs_present']}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
