"""Pre-fetch's view of the mirror's fill path (mirror/prefetch.py ``PrefetchSource``).

A thin adapter over mirror/warm.py: tags are listed with the mirror's own upstream
client (its auth, TLS, caps, Link pages on allowed hosts only), and a tag is made
current through MirrorService as a client's pull would make it (tag TTL, one HEAD
to revalidate, a GET when it changed, every platform of an index, every blob through
the single-flight fill; what is cached costs nothing). Pre-fetch reads are not pulls:
they are not counted in pull statistics, so they never keep content from eviction
(the prefetch list itself does: eviction pins it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ociregistry.mirror.prefetch import PrefetchSource
from ociregistry.mirror.settings import UpstreamSettings


class MirrorFillSource:
    def __init__(self, service: Any) -> None:
        self.service = service  # mirror.service.MirrorService

    def list_tags(self, upstream: UpstreamSettings, repository: str) -> Iterable[str]:
        from ociregistry.mirror.outcomes import upstream_tags
        from ociregistry.mirror.upstream import UpstreamError
        from ociregistry.mirror.warm import route_for

        route = route_for(self.service, upstream.name, repository)
        try:
            return upstream_tags(self.service, route)
        except UpstreamError as exc:
            self.service.record_failure(route, exc)  # the upstream's state shows it
            raise

    def pull(self, upstream: UpstreamSettings, repository: str, tag: str) -> int:
        from ociregistry.mirror.warm import route_for, warm

        route = route_for(self.service, upstream.name, repository)
        return warm(self.service, route, tag).fetched_bytes


def source(runtime: Any) -> PrefetchSource | None:
    service = getattr(runtime, "mirror", None)
    return None if service is None else MirrorFillSource(service)
