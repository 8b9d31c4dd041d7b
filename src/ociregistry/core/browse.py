"""What the web UI shows, as plain data: repositories, tags, manifests, overview.

No Flask here. Every page is a bounded number of indexed queries (see
metadata/browse_queries.py); what a manifest says is read from its stored
payload, and an image's config from its blob, once per manifest page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ociregistry.core import media_types as mt
from ociregistry.core.digests import is_digest, parse_digest
from ociregistry.core.errors import ManifestUnknown, NameUnknown, RegistryError
from ociregistry.core.names import validate_name, validate_tag
from ociregistry.core.registry import Registry
from ociregistry.metadata import browse_queries as q
from ociregistry.storage.base import BlobStorage

log = logging.getLogger("ociregistry.ui")
T = TypeVar("T")
MAX_CONFIG_BYTES = 4 * 1024 * 1024
CREATED_ANNOTATION = "org.opencontainers.image.created"
REFERENCE_TYPE = "vnd.docker.reference.type"  # buildx marks attestation manifests so
IMAGE_CONFIGS = frozenset({
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
})


@dataclass
class TagView:
    name: str
    digest: str
    media_type: str
    kind: str  # "image", "index", "artifact", "schema1"
    size: int  # bytes of the content (layers and config; all children's for an index)
    platforms: list[str]
    created: str | None  # the image's own creation time, when the manifest says it
    pushed_at: float
    artifact_type: str | None = None  # artifactType, else the config's media type
    last_pulled_at: float | None = None  # pull statistics (a GET by this tag)
    pull_count: int = 0


@dataclass
class Layer:
    digest: str
    media_type: str
    size: int | None
    urls: list[str] = field(default_factory=list)


@dataclass
class HistoryEntry:
    created: str
    created_by: str
    comment: str
    empty_layer: bool


@dataclass
class ImageConfig:
    created: str | None = None
    author: str | None = None
    platform: str = ""
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    working_dir: str | None = None
    user: str | None = None
    stop_signal: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)


@dataclass
class Child:
    digest: str
    media_type: str
    size: int
    platform: str
    present: bool
    attestation: bool


@dataclass
class ReferrerGroup:
    artifact_type: str
    referrers: list[q.ReferrerRow]


@dataclass
class ManifestView:
    repository: str
    digest: str
    media_type: str
    kind: str
    size: int
    content_size: int
    pushed_at: float
    tags: list[str]
    subject: str | None
    artifact_type: str | None
    annotations: dict[str, str]
    config_descriptor: Layer | None
    config: ImageConfig | None
    config_note: str | None  # why no config is shown, when there is a descriptor
    layers: list[Layer]
    children: list[Child]
    parents: list[str]
    referrer_groups: list[ReferrerGroup]
    raw: str  # the manifest as pushed, pretty-printed when it is JSON
    last_pulled_at: float | None = None  # pull statistics (GETs by tag or by digest)
    pull_count: int = 0


@dataclass
class Overview:
    totals: q.Totals
    recent: list[q.RecentPush]
    gc_runs: list[q.GCRunRow]


def manifest_kind(media_type: str, artifact_type: str | None = None) -> str:
    if media_type in mt.INDEXES:
        return "index"
    if media_type in mt.SCHEMA1:
        return "schema1"
    if artifact_type and artifact_type not in IMAGE_CONFIGS:
        return "artifact"
    return "image"


def platform_name(platform: Any) -> str:
    if not isinstance(platform, dict):
        return ""
    parts = [str(platform.get("os") or ""), str(platform.get("architecture") or "")]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    name = "/".join(p for p in parts if p)
    if platform.get("os.version"):
        name += f" ({platform['os.version']})"
    return name


def _json(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _is_attestation(entry: dict[str, Any]) -> bool:
    annotations = entry.get("annotations") or {}
    return isinstance(annotations, dict) and REFERENCE_TYPE in annotations


def _descriptors(value: Any) -> list[dict[str, Any]]:
    return [d for d in value if isinstance(d, dict)] if isinstance(value, list) else []


def _size(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [value]
    return None


def parse_image_config(data: bytes) -> ImageConfig:
    doc = _json(data)
    inner = doc.get("config") or doc.get("container_config") or {}
    if not isinstance(inner, dict):
        inner = {}
    labels = inner.get("Labels") or {}
    history = []
    for entry in _descriptors(doc.get("history")):
        history.append(HistoryEntry(
            created=str(entry.get("created") or ""),
            created_by=str(entry.get("created_by") or ""),
            comment=str(entry.get("comment") or ""),
            empty_layer=bool(entry.get("empty_layer")),
        ))
    return ImageConfig(
        created=str(doc["created"]) if doc.get("created") else None,
        author=str(doc["author"]) if doc.get("author") else None,
        platform=platform_name(doc),
        entrypoint=_strings(inner.get("Entrypoint")),
        cmd=_strings(inner.get("Cmd")),
        env=[str(e) for e in inner.get("Env") or [] if isinstance(e, str)],
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        exposed_ports=sorted(str(p) for p in (inner.get("ExposedPorts") or {})),
        volumes=sorted(str(v) for v in (inner.get("Volumes") or {})),
        working_dir=inner.get("WorkingDir") or None,
        user=inner.get("User") or None,
        stop_signal=inner.get("StopSignal") or None,
        history=history,
    )


class BrowseService:
    """Read services for the UI, plus the two deletes it offers (through the core)."""

    def __init__(self, registry: Registry, storage: BlobStorage) -> None:
        self.registry = registry
        self.db = registry.db
        self.storage = storage

    # -- repositories (listings: core/catalog.py) ---------------------------
    def repository(self, name: str) -> q.RepositorySummary:
        validate_name(name)
        summary = q.repository_summary(self.db, name)
        if summary is None or not summary.manifests:
            raise NameUnknown(detail={"name": name})
        return summary

    def tag_view(self, row: q.TagRow, sizes: dict[int, int]) -> TagView:
        doc = _json(row.payload)
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        artifact = doc.get("artifactType") or config.get("mediaType")
        platforms = []
        if row.media_type in mt.INDEXES:
            platforms = [
                platform_name(entry.get("platform"))
                for entry in _descriptors(doc.get("manifests"))
                if not _is_attestation(entry) and platform_name(entry.get("platform"))
            ]
        annotations = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else {}
        return TagView(
            name=row.name,
            digest=row.digest,
            media_type=row.media_type,
            kind=manifest_kind(row.media_type, artifact),
            size=sizes.get(row.manifest_id, 0),
            platforms=platforms,
            created=annotations.get(CREATED_ANNOTATION),
            pushed_at=row.pushed_at,
            artifact_type=str(artifact) if artifact else None,
            last_pulled_at=row.last_pulled_at,
            pull_count=int(row.pull_count or 0),
        )

    # -- one manifest ---------------------------------------------------------
    def manifest(self, name: str, reference: str) -> ManifestView:
        validate_name(name)
        by_digest = is_digest(reference)
        if by_digest:
            parse_digest(reference)
        else:
            validate_tag(reference)
        record = q.manifest_record(self.db, name, reference, by_digest)
        if record is None:
            raise ManifestUnknown(detail={"name": name, "reference": reference})
        doc = _json(record.payload)
        layers, config_desc = self._layers(record, doc)
        config, note = self._config(name, config_desc)
        children = self._children(name, doc) if record.media_type in mt.INDEXES else []
        groups: dict[str, list[q.ReferrerRow]] = {}
        for ref in q.referrers(self.db, name, record.digest):
            groups.setdefault(ref.artifact_type or ref.media_type, []).append(ref)
        annotations = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else {}
        return ManifestView(
            repository=name,
            digest=record.digest,
            media_type=record.media_type,
            kind=manifest_kind(record.media_type, record.artifact_type),
            size=record.size,
            content_size=q.content_sizes(self.db, [record.id]).get(record.id, 0),
            pushed_at=record.created_at,
            tags=q.tags_of_manifest(self.db, record.id),
            subject=record.subject,
            artifact_type=record.artifact_type,
            annotations={str(k): str(v) for k, v in annotations.items()},
            config_descriptor=config_desc,
            config=config,
            config_note=note,
            layers=layers,
            children=children,
            parents=q.parent_indexes(self.db, name, record.digest),
            referrer_groups=[ReferrerGroup(k, v) for k, v in sorted(groups.items())],
            raw=_pretty(record.payload),
            **_pulls(self.db, record.id),
        )

    def _layers(self, record: q.ManifestRecord,
                doc: dict[str, Any]) -> tuple[list[Layer], Layer | None]:
        if record.media_type in mt.SCHEMA1:
            digests = [str(d.get("blobSum")) for d in _descriptors(doc.get("fsLayers"))]
            digests.reverse()  # schema 1 lists the top layer first
            sizes = q.blob_sizes(self.db, digests)
            return [Layer(d, "application/vnd.docker.container.image.rootfs.diff+x-gtar",
                          sizes.get(d)) for d in digests], None
        layers = [
            Layer(str(d.get("digest")), str(d.get("mediaType")), _size(d.get("size")),
                  [str(u) for u in d.get("urls") or []])
            for d in _descriptors(doc.get("layers"))
        ]
        raw_config = doc.get("config")
        config = None
        if isinstance(raw_config, dict):
            config = Layer(str(raw_config.get("digest")), str(raw_config.get("mediaType")),
                           _size(raw_config.get("size")))
        return layers, config

    def _config(self, name: str, desc: Layer | None) -> tuple[ImageConfig | None, str | None]:
        if desc is None:
            return None, None
        if desc.media_type not in IMAGE_CONFIGS:
            return None, "This artifact's config is not an image configuration."
        too_large = "The image configuration is too large to show here."
        try:
            blob = self.registry.blob(name, desc.digest)  # linked into this repository?
            # The size the index holds decides, never the one the manifest declares
            # (an old or imported manifest may lie), and no more than that is read.
            if blob.size > MAX_CONFIG_BYTES:
                return None, too_large
            data = b"".join(self.storage.read_blob_range(desc.digest, 0, blob.size)
                            if blob.size else ())
        except (RegistryError, OSError) as exc:
            return None, f"The image configuration could not be read ({type(exc).__name__})."
        return parse_image_config(data[:MAX_CONFIG_BYTES]), None

    def _children(self, name: str, doc: dict[str, Any]) -> list[Child]:
        entries = _descriptors(doc.get("manifests"))
        present = q.present_manifests(self.db, name, [str(e.get("digest")) for e in entries])
        return [
            Child(
                digest=str(e.get("digest")),
                media_type=str(e.get("mediaType")),
                size=_size(e.get("size")),
                platform=platform_name(e.get("platform")),
                present=str(e.get("digest")) in present,
                attestation=_is_attestation(e),
            )
            for e in entries
        ]

    # -- overview -------------------------------------------------------------
    def overview(self, visible: Callable[[str], bool] | None = None, recent: int = 10) -> Overview:
        """``visible``: the repositories the caller may see (None: all)."""
        pushes = q.recent_pushes(self.db, recent if visible is None else recent * 10)
        if visible is not None:
            pushes = [p for p in pushes if visible(p.repository)][:recent]
        return Overview(totals=q.totals(self.db), recent=pushes, gc_runs=q.gc_runs(self.db, 10))

    def gc_history(self, limit: int = 20) -> list[q.GCRunRow]:
        return q.gc_runs(self.db, limit)

    def gc_running(self) -> bool:
        return q.gc_lock_held(self.db)

    # -- deletes (through the core's rules: delete_enabled, validation) -----
    def delete_tag(self, name: str, tag: str) -> None:
        self.registry.delete_manifest(name, validate_tag(tag))

    def delete_manifest(self, name: str, digest: str) -> None:
        if not is_digest(digest):
            raise ManifestUnknown(detail={"name": name, "reference": digest})
        self.registry.delete_manifest(name, digest)

    @property
    def delete_enabled(self) -> bool:
        return self.registry.options.delete_enabled


def _pretty(payload: bytes) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return payload.decode("utf-8", "replace")


def _pulls(db: Any, manifest_id: int) -> dict[str, Any]:
    from ociregistry.metadata.pull_stats_queries import manifest_pulls

    count, last = manifest_pulls(db, [manifest_id]).get(manifest_id, (0, None))
    return {"pull_count": count, "last_pulled_at": last}
