"""Pre-fetch's view of the mirror's fill path (mirror/prefetch.py ``PrefetchSource``).

Tags are listed with the mirror's own upstream client (its auth, TLS, caps and
redirect allow-list), following ``Link: <...>; rel="next"`` on the upstream's host
only. A tag is pulled through MirrorService exactly as a client's pull would make
it current: the manifest (tag TTL, one HEAD to revalidate, fetched when new), the
children of an index, then each blob through the fill (stream-through, single
flight); a blob already cached costs nothing. Pre-fetch reads are not pulls: they
are not counted in pull statistics, so they never keep content from eviction (the
prefetch list itself does: eviction pins it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

from ociregistry.core.manifests import parse_manifest
from ociregistry.mirror.fill import StreamedBlob
from ociregistry.mirror.prefetch import PrefetchSource
from ociregistry.mirror.routing import resolve
from ociregistry.mirror.settings import UpstreamSettings
from ociregistry.mirror.upstream import UpstreamError

PAGE = 1000
MAX_LISTING = 8 << 20  # bytes of one tags/list page read at most
MAX_PAGES = 1000


class MirrorFillSource:
    def __init__(self, service: Any) -> None:
        self.service = service  # mirror.service.MirrorService
        self.db = service.registry.db

    def list_tags(self, upstream: UpstreamSettings, repository: str) -> Iterator[str]:
        route = resolve(self.service.settings, f"{upstream.name}/{repository}", None)
        assert route is not None
        client = self.service.client(upstream)
        url: str | None = f"{upstream.url}/v2/{route.remote_name}/tags/list?n={PAGE}"
        for _ in range(MAX_PAGES):
            if url is None:
                return
            with client.open("GET", url, client.scope(route.remote_name)) as response:
                if response.status_code != 200:
                    raise UpstreamError(f"{upstream.name} answered {response.status_code} "
                                        f"listing the tags of {route.remote_name}", "status",
                                        response.status_code)
                body = response.raw.read(MAX_LISTING + 1, decode_content=True)
                link = response.headers.get("Link", "")
            if len(body) > MAX_LISTING:
                raise UpstreamError(f"{upstream.name}: a tag list page over {MAX_LISTING} "
                                    "bytes", "status", 502)
            yield from (json.loads(body).get("tags") or [])
            url = _next(upstream.url, link, client)

    def pull(self, upstream: UpstreamSettings, repository: str, tag: str) -> int:
        route = resolve(self.service.settings, f"{upstream.name}/{repository}", None)
        assert route is not None
        self.service.manifest(route, tag)
        row = self.db.get_manifest(route.local_name, tag, False)
        if row is None:  # e.g. evicted meanwhile: the next run brings it back
            raise RuntimeError(f"{route.local_name}:{tag} is not in the cache after its fill")
        fetched = 0
        pending = [(row.payload, row.media_type)]
        while pending:
            payload, media_type = pending.pop()
            parsed = parse_manifest(payload, media_type)
            for child in parsed.children:
                self.service.manifest(route, child)
                found = self.db.get_manifest(route.local_name, child, True)
                if found is not None:
                    pending.append((found.payload, found.media_type))
            for digest in parsed.blobs:
                blob = self.service.fills.blob(route, digest, head=False)
                if isinstance(blob, StreamedBlob):
                    for chunk in blob.chunks:  # the fill commits it as this drains
                        fetched += len(chunk)
        return fetched


def _next(base: str, link: str, client: Any) -> str | None:
    """The rel="next" URL of a Link header, if it stays on an allowed host."""
    for part in link.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            url = urljoin(base + "/", target.strip().strip("<>"))
            return url if client.host_allowed(urlsplit(url).netloc) else None
    return None


def source(runtime: Any) -> PrefetchSource | None:
    service = getattr(runtime, "mirror", None)
    return None if service is None else MirrorFillSource(service)
