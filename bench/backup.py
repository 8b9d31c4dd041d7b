"""Backup and restore throughput of the embedded default.

Pushes ``--images`` images of ``--layers`` random layers of ``--layer-mib`` MiB
to a fresh registry, then times `ociregistry backup` (full), a second backup
(incremental, nothing new), one after ``--new`` more images, and `restore`.

    .venv/bin/python bench/backup.py --images 20 --layers 3 --layer-mib 8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import RegistryProcess  # noqa: E402


def push_image(url: str, repo: str, layers: int, size: int) -> None:
    descriptors = []
    for _ in range(layers):
        data = os.urandom(size)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                          data=data, timeout=600)
        r.raise_for_status()
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": digest, "size": size})
    config = json.dumps({"n": os.urandom(8).hex()}).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                  data=config, timeout=60).raise_for_status()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": digest, "size": len(config)}, "layers": descriptors}
    requests.put(f"{url}/v2/{repo}/manifests/latest", data=json.dumps(manifest),
                 headers={"Content-Type": manifest["mediaType"]}, timeout=60).raise_for_status()


def timed(*args: str) -> tuple[float, dict]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "ociregistry", *args, "--json"],
                            capture_output=True, text=True, check=True)
    return time.monotonic() - started, json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--layer-mib", type=float, default=8)
    parser.add_argument("--new", type=int, default=2, help="images pushed before the third run")
    args = parser.parse_args()
    size = int(args.layer_mib * (1 << 20))
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as base:
        data, dest = Path(base) / "data", Path(base) / "backup"
        server = RegistryProcess(data).start()
        try:
            for i in range(args.images):
                push_image(server.url, f"bench/img{i}", args.layers, size)
            rows = [("full backup", *timed("backup", "--data-dir", str(data), str(dest)))]
            rows.append(("incremental, nothing new",
                         *timed("backup", "--data-dir", str(data), str(dest))))
            for i in range(args.new):
                push_image(server.url, f"bench/new{i}", args.layers, size)
            rows.append((f"incremental, {args.new} new images",
                         *timed("backup", "--data-dir", str(data), str(dest))))
        finally:
            server.stop()
        rows.append(("restore", *timed("restore", "--data-dir", str(Path(base) / "restored"),
                                       str(dest))))
    print(f"{'operation':<28} {'seconds':>8} {'copied MiB':>11} {'MiB/s':>8}")
    for name, seconds, result in rows:
        moved = result.get("copied_bytes", result.get("bytes", 0)) / (1 << 20)
        print(f"{name:<28} {seconds:>8.2f} {moved:>11.1f} {moved / seconds:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
