"""Manifest parsing and validation: what a manifest is and what it refers to."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ociregistry.core import media_types as mt
from ociregistry.core.digests import parse_digest
from ociregistry.core.errors import ManifestInvalid


@dataclass
class ParsedManifest:
    """The facts about a manifest that the index needs."""

    media_type: str
    blobs: list[str] = field(default_factory=list)  # digests that must be in the repository
    children: list[str] = field(default_factory=list)  # manifests an index points at
    subject: str | None = None
    artifact_type: str | None = None  # as the referrers API reports it
    annotations: dict[str, str] | None = None
    platforms: list[dict[str, Any]] = field(default_factory=list)  # per child, for an index
    # The size each descriptor declares for a blob or child the registry must hold
    # (foreign layers and the subject are not held, so not listed).
    sizes: dict[str, int] = field(default_factory=dict)

    def declare(self, descriptor: dict[str, Any], where: str) -> None:
        """Record a descriptor's size; one digest declared with two sizes is a lie."""
        digest, size = descriptor["digest"], descriptor["size"]
        if self.sizes.setdefault(digest, size) != size:
            raise _invalid(
                f"{where}: the same digest is declared with two sizes",
                {"digest": digest, "sizes": sorted({self.sizes[digest], size})},
            )


def _invalid(message: str, detail: Any = None) -> ManifestInvalid:
    return ManifestInvalid(message, detail)


def _descriptor(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: descriptor must be an object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}: descriptor needs a mediaType")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise _invalid(f"{where}: descriptor needs a digest")
    try:
        parse_digest(digest)
    except Exception as exc:
        raise _invalid(f"{where}: invalid digest", {"digest": digest}) from exc
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}: descriptor needs a non-negative integer size")
    urls = value.get("urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise _invalid(f"{where}: urls must be a list of strings")
    annotations = value.get("annotations")
    if annotations is not None and not _is_string_map(annotations):
        raise _invalid(f"{where}: annotations must map strings to strings")
    return value


def _is_string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _is_foreign(layer: dict[str, Any]) -> bool:
    """A non-distributable layer with URLs need not be pushed to the registry."""
    return bool(layer.get("urls")) and layer["mediaType"].startswith(mt.NON_DISTRIBUTABLE_PREFIXES)


def _resolve_media_type(content_type: str | None, doc: dict[str, Any]) -> str:
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    header = (content_type or "").split(";", 1)[0].strip().lower()
    if header in mt.ALL_MANIFESTS:
        if declared and declared != header and header not in mt.SCHEMA1:
            raise _invalid(
                "mediaType does not match Content-Type",
                {"mediaType": declared, "contentType": header},
            )
        return header
    if declared in mt.ALL_MANIFESTS:
        return declared
    # No usable type: infer the OCI type from the shape, as the image spec allows.
    if doc.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1_SIGNED if "signatures" in doc else mt.DOCKER_SCHEMA1
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc:
        return mt.OCI_MANIFEST
    raise _invalid("unsupported manifest media type", {"contentType": content_type})


def parse_manifest(payload: bytes, content_type: str | None) -> ParsedManifest:
    """Validate a pushed manifest and list what it references."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _invalid("manifest is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    media_type = _resolve_media_type(content_type, doc)
    if media_type in mt.SCHEMA1:
        return _parse_schema1(doc, media_type)
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    annotations = doc.get("annotations")
    if annotations is not None and not _is_string_map(annotations):
        raise _invalid("annotations must map strings to strings")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    subject = None
    if doc.get("subject") is not None:
        subject = _descriptor(doc["subject"], "subject")["digest"]
    parsed = ParsedManifest(
        media_type=media_type, subject=subject, annotations=annotations or None
    )
    if media_type in mt.INDEXES:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise _invalid("an index needs a manifests list")
        for i, entry in enumerate(manifests):
            desc = _descriptor(entry, f"manifests[{i}]")
            parsed.children.append(desc["digest"])
            parsed.declare(desc, f"manifests[{i}]")
            platform = desc.get("platform")
            parsed.platforms.append(platform if isinstance(platform, dict) else {})
        parsed.artifact_type = artifact_type
        return parsed
    config = _descriptor(doc.get("config"), "config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise _invalid("an image manifest needs a layers list")
    parsed.blobs.append(config["digest"])
    parsed.declare(config, "config")
    for i, entry in enumerate(layers):
        layer = _descriptor(entry, f"layers[{i}]")
        if not _is_foreign(layer):
            parsed.blobs.append(layer["digest"])
            parsed.declare(layer, f"layers[{i}]")
    parsed.artifact_type = artifact_type or config["mediaType"]
    return parsed


def _parse_schema1(doc: dict[str, Any], media_type: str) -> ParsedManifest:
    if doc.get("schemaVersion") != 1:
        raise _invalid("schemaVersion must be 1")
    for key in ("name", "tag"):
        if not isinstance(doc.get(key), str):
            raise _invalid(f"schema1 manifest needs {key}")
    layers = doc.get("fsLayers")
    if not isinstance(layers, list) or not layers:
        raise _invalid("schema1 manifest needs fsLayers")
    history = doc.get("history")
    if not isinstance(history, list) or len(history) != len(layers):
        raise _invalid("schema1 history must have one entry per fsLayer")
    blobs = []
    for i, layer in enumerate(layers):
        blob_sum = layer.get("blobSum") if isinstance(layer, dict) else None
        if not isinstance(blob_sum, str):
            raise _invalid(f"fsLayers[{i}] needs a blobSum")
        try:
            parse_digest(blob_sum)
        except Exception as exc:
            raise _invalid(f"fsLayers[{i}]: invalid blobSum") from exc
        if blob_sum not in blobs:
            blobs.append(blob_sum)
    signed = "signatures" in doc
    return ParsedManifest(
        media_type=mt.DOCKER_SCHEMA1_SIGNED if signed else media_type, blobs=blobs
    )


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def canonical_payload(payload: bytes, media_type: str) -> bytes:
    """The bytes a manifest's digest is computed over.

    A signed schema 1 manifest (JWS) is digested without its signatures: the
    protected header of a signature gives the length of the signed prefix and
    the tail that closes the JSON object again.
    """
    if media_type != mt.DOCKER_SCHEMA1_SIGNED:
        return payload
    try:
        doc = json.loads(payload)
        protected = json.loads(_b64url_decode(doc["signatures"][0]["protected"]))
        length = int(protected["formatLength"])
        tail = _b64url_decode(protected["formatTail"])
    except (
        ValueError, KeyError, IndexError, TypeError, OverflowError, RecursionError, binascii.Error
    ) as exc:
        raise _invalid("schema1 signature has no usable protected header") from exc
    if not 0 < length <= len(payload):
        raise _invalid("schema1 formatLength out of range")
    return payload[:length] + tail


def manifest_digest(payload: bytes, media_type: str, algorithm: str = "sha256") -> str:
    data = canonical_payload(payload, media_type)
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
