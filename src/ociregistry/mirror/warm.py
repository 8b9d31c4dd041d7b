"""Making mirrored content current without a client: what pre-fetch (and
`ociregistry mirror sync`) builds on. No Flask, no scheduling here.

``warm(service, route, reference)`` makes the manifest of a tag or digest current
(the same TTL/HEAD rules as a pull), then caches every blob and, for an index,
every child manifest and its blobs (single-flight with concurrent pulls). The
upstream's tag list is ``outcomes.upstream_tags``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ociregistry.core import media_types as mt
from ociregistry.core.registry import BlobInfo
from ociregistry.mirror.fill import StreamedBlob
from ociregistry.mirror.routing import Route, _route
from ociregistry.mirror.service import MirrorService


@dataclass
class Warmed:
    """What one warm() did: manifests and blobs seen, and bytes fetched from upstream."""

    manifests: int = 0
    blobs: int = 0
    fetched_bytes: int = 0
    results: dict[str, int] = field(default_factory=dict)  # hit/miss/... counts


def route_for(service: MirrorService, upstream: str, repository: str) -> Route:
    """The route of ``repository`` (the upstream's name) of a configured upstream."""
    settings = service.settings.by_name(upstream)
    if settings is None:
        raise KeyError(f"no upstream named {upstream!r}")
    return _route(settings, repository, None)


def warm(service: MirrorService, route: Route, reference: str) -> Warmed:
    """Cache the image (or index, with every platform) ``reference`` of ``route``."""
    done = Warmed()
    _manifest(service, route, reference, done, depth=0)
    return done


def _manifest(service: MirrorService, route: Route, reference: str, done: Warmed,
              depth: int) -> None:
    served = service.manifest(route, reference)
    done.manifests += 1
    done.results[served.result] = done.results.get(served.result, 0) + 1
    row = service.db.get_manifest(route.local_name, reference, ":" in reference)
    if row is None:
        return
    body = json.loads(row.payload)
    if row.media_type in mt.INDEXES and depth == 0:
        for child in body.get("manifests") or []:
            if isinstance(child, dict) and isinstance(child.get("digest"), str):
                _manifest(service, route, child["digest"], done, depth + 1)
        return
    digests = [d.get("digest") for d in [body.get("config") or {}, *(body.get("layers") or [])]
               if isinstance(d, dict)]
    digests += [d.get("blobSum") for d in body.get("fsLayers") or [] if isinstance(d, dict)]
    for digest in dict.fromkeys(d for d in digests if isinstance(d, str)):
        blob = service.fills.blob(route, digest, head=False)
        done.blobs += 1
        if isinstance(blob, StreamedBlob):
            for chunk in blob.chunks:  # the fill's own thread writes; this only drains
                done.fetched_bytes += len(chunk)
        else:
            assert isinstance(blob, BlobInfo)
