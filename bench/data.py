"""Test content, made once per harness run in a temporary directory: random blobs
(every one distinct, so no push is deduplicated) and small multi-layer images.
Both registries start with empty storage each run, so the same files serve all runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
KiB = 1 << 10
# Layer sizes of the 10-layer images of the pull and push flows (about 37 MiB):
# a few big base layers and a tail of small ones, as real images have.
LAYER_SIZES = [16 * MiB, 8 * MiB, 4 * MiB, 4 * MiB, 2 * MiB, MiB, MiB,
               512 * KiB, 256 * KiB, 64 * KiB]
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass
class Blob:
    path: Path
    size: int
    digest: str

    def read(self) -> bytes:
        return self.path.read_bytes()


_POOL = os.urandom(2 * MiB)


def make_blob(path: Path, size: int, seed: int) -> Blob:
    """Incompressible bytes, fast: each MiB is a (seed, index) stamp followed by a
    window of a random pool, so no two MiB of any two blobs are the same."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i, start in enumerate(range(0, size, MiB)):
            count = min(MiB, size - start)
            off = (seed * 7919 + i * 104729) % MiB
            data = (seed.to_bytes(8, "big") + i.to_bytes(8, "big") + _POOL[off:off + MiB])[:count]
            f.write(data)
            h.update(data)
    return Blob(path, size, "sha256:" + h.hexdigest())


@dataclass
class Image:
    layers: list[Blob]
    config: bytes
    config_digest: str
    manifest: bytes
    digest: str

    @property
    def size(self) -> int:
        return sum(b.size for b in self.layers) + len(self.config)


def make_image(folder: Path, seed: int, sizes: list[int] = LAYER_SIZES) -> Image:
    folder.mkdir(parents=True, exist_ok=True)
    layers = [make_blob(folder / f"layer{i}", size, seed * 1000 + i)
              for i, size in enumerate(sizes)]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Env": [f"SEED={seed}"]},
        "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]},
    }).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": config_digest},
        "layers": [{"mediaType": DOCKER_LAYER, "size": b.size, "digest": b.digest}
                   for b in layers],
    }, indent=3).encode()
    return Image(layers, config, config_digest, manifest,
                 "sha256:" + hashlib.sha256(manifest).hexdigest())


@dataclass
class Dataset:
    big: Blob  # pushed monolithically, then pulled
    big_chunked: Blob
    quarter: list[Blob]  # four concurrent pushes
    small: Blob  # 1 KiB
    pull_image: Image
    push_images: list[Image]  # one per push-flow client
    tiny: Image  # config only, no layers: tagged 1,000 times, pushed to 1,000 repositories

    @classmethod
    def create(cls, folder: Path, big_mib: int, push_clients: int) -> Dataset:
        folder.mkdir(parents=True, exist_ok=True)
        big = make_blob(folder / "big", big_mib * MiB, 1)
        big_chunked = make_blob(folder / "big-chunked", big_mib * MiB, 2)
        quarter = [make_blob(folder / f"quarter{i}", big_mib * MiB // 4, 10 + i)
                   for i in range(4)]
        small = make_blob(folder / "small", KiB, 3)
        pull_image = make_image(folder / "pull", 100)
        push_images = [make_image(folder / f"push{i}", 200 + i) for i in range(push_clients)]
        tiny = make_image(folder / "tiny", 300, [])
        return cls(big, big_chunked, quarter, small, pull_image, push_images, tiny)


def zero_blob(path: Path, size: int) -> Blob:
    """A sparse file of zeros: costs no disk to make, streams like any other blob."""
    with open(path, "wb") as f:
        f.truncate(size)
    h, block = hashlib.sha256(), bytes(MiB)
    for start in range(0, size, MiB):
        h.update(block[:min(MiB, size - start)])
    return Blob(path, size, "sha256:" + h.hexdigest())
