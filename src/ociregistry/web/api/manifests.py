"""/api/v1/repositories/{name}/manifests/{digest}: what a manifest holds; deleting it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ociregistry.core.browse import ManifestView
from ociregistry.web.api.blueprint import REPOSITORY_NAME, api_services, operation, schema

DIGEST = {"name": "digest", "in": "path", "required": True,
          "description": "The manifest's digest, e.g. `sha256:...`.",
          "schema": {"type": "string", "maxLength": 160,
                     "pattern": r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$"}}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_NULLABLE_STRINGS = {"type": ["array", "null"], "items": {"type": "string"}}
DESCRIPTOR = schema("Descriptor", {
    "type": "object", "required": ["digest", "media_type", "size"],
    "properties": {"digest": {"type": "string"}, "media_type": {"type": "string"},
                   "size": {"type": ["integer", "null"]}, "urls": _STRINGS},
})
CONFIG = schema("ImageConfigSummary", {
    "type": "object",
    "properties": {
        "created": {"type": ["string", "null"]}, "author": {"type": ["string", "null"]},
        "platform": {"type": "string"}, "entrypoint": _NULLABLE_STRINGS,
        "cmd": _NULLABLE_STRINGS, "env": _STRINGS,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "exposed_ports": _STRINGS, "volumes": _STRINGS,
        "working_dir": {"type": ["string", "null"]}, "user": {"type": ["string", "null"]},
        "stop_signal": {"type": ["string", "null"]},
        "history": {"type": "array", "items": {"type": "object"}},
    },
})
MANIFEST = schema("Manifest", {
    "type": "object",
    "required": ["repository", "digest", "media_type", "kind", "size", "content_size",
                 "pushed_at", "tags", "subject", "artifact_type", "annotations", "config",
                 "layers", "platforms", "children", "referrers"],
    "properties": {
        "repository": {"type": "string"},
        "digest": {"type": "string"},
        "media_type": {"type": "string"},
        "kind": {"type": "string", "enum": ["image", "index", "artifact", "schema1"]},
        "size": {"type": "integer", "description": "bytes of the manifest itself"},
        "content_size": {"type": "integer",
                         "description": "bytes of the distinct blobs it references"},
        "pushed_at": {"type": "number"},
        "last_pulled_at": {"type": ["number", "null"],
                           "description": "last GET by tag or digest (null: never)"},
        "pull_count": {"type": "integer", "description": "GETs by tag or digest"},
        "tags": {**_STRINGS, "description": "tags pointing at it (up to 200)"},
        "subject": {"type": ["string", "null"]},
        "artifact_type": {"type": ["string", "null"]},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "config": {
            "type": ["object", "null"],
            "properties": {"descriptor": DESCRIPTOR,
                           "image": {"oneOf": [CONFIG, {"type": "null"}]},
                           "note": {"type": ["string", "null"]}},
        },
        "layers": {"type": "array", "items": DESCRIPTOR},
        "platforms": {**_STRINGS, "description": "an index's platforms (attestations left out)"},
        "children": {"type": "array", "items": {"type": "object", "properties": {
            "digest": {"type": "string"}, "media_type": {"type": "string"},
            "size": {"type": "integer"}, "platform": {"type": "string"},
            "present": {"type": "boolean"}, "attestation": {"type": "boolean"}}}},
        "parents": {**_STRINGS, "description": "indexes here that list it"},
        "referrers": {"type": "array", "items": {"type": "object", "properties": {
            "digest": {"type": "string"}, "media_type": {"type": "string"},
            "size": {"type": "integer"}, "artifact_type": {"type": ["string", "null"]},
            "annotations": {"type": "object"}, "created_at": {"type": "number"}}},
            "description": "manifests whose subject is this one (signatures, SBOMs, ...)"},
    },
})


def manifest_json(view: ManifestView) -> dict[str, Any]:
    config = None
    if view.config_descriptor is not None:
        config = {"descriptor": asdict(view.config_descriptor),
                  "image": asdict(view.config) if view.config else None,
                  "note": view.config_note}
    return {
        "repository": view.repository, "digest": view.digest, "media_type": view.media_type,
        "kind": view.kind, "size": view.size, "content_size": view.content_size,
        "pushed_at": view.pushed_at, "tags": view.tags, "subject": view.subject,
        "artifact_type": view.artifact_type, "annotations": view.annotations,
        "config": config, "layers": [asdict(layer) for layer in view.layers],
        "platforms": [c.platform for c in view.children if c.platform and not c.attestation],
        "children": [asdict(child) for child in view.children],
        "parents": view.parents,
        "referrers": [asdict(ref) for group in view.referrer_groups for ref in group.referrers],
        "last_pulled_at": view.last_pulled_at, "pull_count": view.pull_count,
    }


@operation(
    "/repositories/{name}/manifests/{digest}", "GET", summary="A manifest in detail",
    tag="manifests", permission="repository:pull", response=MANIFEST,
    description="Layers, the image configuration's summary, an index's platforms, "
                "annotations and referrers with their artifact types.",
    parameters=(REPOSITORY_NAME, DIGEST),
)
def get_manifest(name: str, digest: str) -> dict[str, Any]:
    return manifest_json(api_services().browse.manifest(name, _digest(digest)))


@operation(
    "/repositories/{name}/manifests/{digest}", "DELETE", summary="Delete a manifest",
    tag="manifests", permission="repository:delete", response=None, status=204,
    description="The same call as DELETE /v2/{name}/manifests/{digest}: the manifest and its "
                "tags go; blobs are freed by garbage collection.",
    parameters=(REPOSITORY_NAME, DIGEST),
)
def delete_manifest(name: str, digest: str) -> None:
    api_services().browse.delete_manifest(name, _digest(digest))


def _digest(digest: str) -> str:
    from ociregistry.core.digests import is_digest
    from ociregistry.web.api.problems import Problem

    if not is_digest(digest):
        raise Problem("invalid_reference", "not a digest", parameter="digest")
    return digest
