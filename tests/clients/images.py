"""Build OCI image layouts on disk with the standard library only.

No network here: real clients (skopeo, podman) read these layouts and push
them to the registry under test. Everything is deterministic for a given salt,
so each test can build images whose blobs no other test shares.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "2024-01-02T03:04:05Z"
MTIME = 1704164645


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pseudo_random(seed: str, size: int) -> bytes:
    """Incompressible but reproducible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@dataclass
class Entry:
    """One tar member: a directory, a regular file or a symlink."""

    path: str
    data: bytes = b""
    mode: int = 0o644
    kind: str = "file"  # "file", "dir" or "symlink"
    target: str = ""


@dataclass
class Layer:
    tar: bytes  # uncompressed
    blob: bytes  # gzip-compressed, as stored in the registry
    created_by: str

    @property
    def digest(self) -> str:
        return sha256(self.blob)

    @property
    def diff_id(self) -> str:
        return sha256(self.tar)


@dataclass
class Image:
    """One image as written into a layout: what a client should reproduce."""

    manifest: bytes
    config: bytes
    layers: list[Layer]
    files: dict[str, bytes]  # the final filesystem: regular files only
    symlinks: dict[str, str]
    removed: list[str]  # paths whited out by an upper layer
    platform: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    def blobs(self) -> dict[str, bytes]:
        out = {self.config_digest: self.config, self.digest: self.manifest}
        out.update({layer.digest: layer.blob for layer in self.layers})
        return out


@dataclass
class MultiArch:
    index: bytes
    images: dict[str, Image]  # "linux/amd64" -> Image

    @property
    def digest(self) -> str:
        return sha256(self.index)


def make_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if e.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif e.kind == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, e.target, 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(e.data), e.mode
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    return buf.getvalue()


def canonical(obj: object) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True).encode()


def _layer_entries(salt: str, arch: str) -> list[tuple[str, list[Entry]]]:
    os_release = f'NAME="Test OS"\nID=testos\nVERSION_ID="{salt}"\n'.encode()
    return [
        ("ADD rootfs /", [
            Entry("etc", kind="dir"),
            Entry("etc/os-release", os_release),
            Entry("etc/hostname", b"testhost\n"),
            Entry("etc/release", kind="symlink", target="os-release"),
            Entry("hello.txt", f"hello from {salt}\n".encode()),
            Entry("usr", kind="dir"),
            Entry("usr/share", kind="dir"),
            Entry("usr/share/readme.txt", b"The quick brown fox.\n" * 400),
        ]),
        ("COPY app /app", [
            Entry("app", kind="dir"),
            Entry("app/data.bin", pseudo_random(f"{salt}/{arch}", 96 * 1024)),
            Entry("app/run.sh", b"#!/bin/sh\necho running\n", mode=0o755),
            Entry("app/arch.txt", f"{arch}\n".encode()),
        ]),
        ("RUN rm /hello.txt && configure", [
            Entry(".wh.hello.txt"),
            Entry("app", kind="dir"),
            Entry("app/config.json", canonical({"salt": salt, "arch": arch})),
        ]),
    ]


def build_image(salt: str, arch: str = "amd64", variant: str = "") -> Image:
    """A three-layer OCI image; the third layer whites out a file of the first."""
    layers: list[Layer] = []
    files: dict[str, bytes] = {}
    symlinks: dict[str, str] = {}
    removed: list[str] = []
    for created_by, entries in _layer_entries(salt, arch):
        tar = make_tar(entries)
        layers.append(Layer(tar=tar, blob=gzip_bytes(tar), created_by=created_by))
        for e in entries:
            name = e.path.rsplit("/", 1)[-1]
            if name.startswith(".wh."):
                gone = e.path[: -len(name)] + name[4:]
                files.pop(gone, None)
                removed.append(gone)
            elif e.kind == "file":
                files[e.path] = e.data
            elif e.kind == "symlink":
                symlinks[e.path] = e.target
    platform = {"architecture": arch, "os": "linux"}
    if variant:
        platform["variant"] = variant
    config = canonical({
        "created": CREATED,
        "author": "tests/clients/images.py",
        **platform,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": ["/app/run.sh"],
            "WorkingDir": "/app",
            "Labels": {"org.example.salt": salt, "org.example.arch": arch},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": CREATED, "created_by": layer.created_by} for layer in layers
        ],
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": len(layer.blob)}
            for layer in layers
        ],
        "annotations": {"org.opencontainers.image.created": CREATED},
    })
    return Image(manifest, config, layers, files, symlinks, removed, platform)


def descriptor(media_type: str, data: bytes, **extra: object) -> dict:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def write_blobs(layout: Path, blobs: dict[str, bytes]) -> None:
    root = layout / "blobs" / "sha256"
    root.mkdir(parents=True, exist_ok=True)
    for digest, data in blobs.items():
        (root / digest.removeprefix("sha256:")).write_bytes(data)


def write_layout(layout: Path, refs: dict[str, dict]) -> None:
    """Write oci-layout and index.json naming each descriptor by its tag."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    manifests = [
        {**desc, "annotations": {REF_NAME: tag}} for tag, desc in sorted(refs.items())
    ]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    (layout / "index.json").write_bytes(canonical(index))


def write_image(layout: Path, salt: str, tag: str = "latest", arch: str = "amd64",
                variant: str = "") -> Image:
    """Write a multi-layer image into an OCI layout at `layout`, tagged `tag`."""
    image = build_image(salt, arch, variant)
    write_blobs(layout, image.blobs())
    write_layout(layout, {tag: descriptor(OCI_MANIFEST, image.manifest)})
    return image


PLATFORMS = [("amd64", ""), ("arm64", "v8")]


def write_multiarch(layout: Path, salt: str, tag: str = "latest") -> MultiArch:
    """Write an OCI index (linux/amd64 + linux/arm64/v8) into a layout, tagged `tag`."""
    images: dict[str, Image] = {}
    entries = []
    for arch, variant in PLATFORMS:
        image = build_image(salt, arch, variant)
        images["linux/" + arch] = image
        write_blobs(layout, image.blobs())
        entries.append(descriptor(OCI_MANIFEST, image.manifest, platform=image.platform))
    index = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    write_blobs(layout, {sha256(index): index})
    write_layout(layout, {tag: descriptor(OCI_INDEX, index)})
    return MultiArch(index, images)


def read_layout_manifest(layout: Path, tag: str) -> tuple[dict, bytes]:
    """The descriptor that index.json gives for `tag`, and the blob it points to."""
    index = json.loads((layout / "index.json").read_bytes())
    for desc in index["manifests"]:
        if desc.get("annotations", {}).get(REF_NAME) == tag:
            return desc, layout_blob(layout, desc["digest"])
    raise KeyError(f"{tag} not in {layout}/index.json: {index}")


def layout_blob(layout: Path, digest: str) -> bytes:
    algo, hexdigest = digest.split(":", 1)
    return (layout / "blobs" / algo / hexdigest).read_bytes()
