"""The pull-through cache's rules for manifests (what fills and tag lists share is in outcomes.py).

Tag pulls: within the upstream's ``tag_ttl`` (kept in ``mirror_tags``, shared by
every worker and instance) the cached manifest is served without asking upstream;
after it, one HEAD revalidates (same digest: the check time moves on; another:
the new manifest is fetched, verified and stored through the normal core path).
Digest pulls never ask upstream once cached. A multi-arch index is stored as is;
its children are fetched when clients ask for them. Upstream 404s are remembered
for ``negative_ttl``. When upstream fails (timeout, connection, 5xx, 401/403, 429)
a copy checked within ``max_stale`` is served, marked stale; a 429 also stops every
worker asking until its Retry-After is over.
"""

from __future__ import annotations

import logging
import time
import uuid

from ociregistry import metrics
from ociregistry.core.digests import is_digest, parse_digest
from ociregistry.core.errors import (
    Denied,
    ManifestUnknown,
    RegistryError,
)
from ociregistry.core.names import validate_tag
from ociregistry.core.registry import Registry
from ociregistry.metadata import mirror_queries as q
from ociregistry.mirror.fill import BlobFills
from ociregistry.mirror.outcomes import Outcomes, Served, UpstreamUnavailable, upstream_tags
from ociregistry.mirror.routing import Route, resolve
from ociregistry.mirror.settings import MirrorSettings
from ociregistry.mirror.upstream import (
    MANIFEST_ACCEPT,
    UpstreamError,
)

log = logging.getLogger(__name__)


class MirrorService(Outcomes):
    def __init__(self, settings: MirrorSettings, registry: Registry) -> None:
        super().__init__(settings, registry)
        self.fills = BlobFills(self)

    # -- routing ------------------------------------------------------------
    def route(self, name: str, ns: str | None, method: str) -> Route | None:
        return resolve(self.settings, name, ns, method, self._is_local)

    def _is_local(self, name: str) -> bool:
        with self.db.read() as conn:
            return self.db.repository_id(conn, name) is not None

    def check_write(self, route: Route, method: str) -> None:
        """A push or delete under an upstream's prefix: refused unless allow_push."""
        if not route.upstream.allow_push:
            raise Denied(f"{route.local_name} mirrors upstream {route.upstream.name}: "
                         f"{method} is refused (pushes go to a repository outside the prefix)",
                         {"name": route.local_name, "upstream": route.upstream.name})

    # -- manifests ----------------------------------------------------------
    def manifest(self, route: Route, reference: str) -> Served:
        """Make the manifest ``reference`` current in ``route.local_name`` (then the
        normal GET answers it), or raise an OCI error."""
        if is_digest(reference):
            parse_digest(reference)
            if self._stored(route, reference, True):
                return self.count(route, "manifest", "hit", Served("hit"))
            self.check_negative(route, reference, ManifestUnknown)
            try:
                return self._single_flight(route, reference,
                                           lambda: self._fetch(route, reference))
            except UpstreamError as exc:
                raise self.failed(route, exc) from exc
        validate_tag(reference)
        for _ in range(3):
            served = self._fresh(route, reference)
            if served is not None:
                return served
            token = uuid.uuid4().hex
            key = f"manifest:{route.local_name}:{reference}"
            if q.take_fill(self.db, key, token, route.upstream.name,
                           self.settings.fill_lease_seconds):
                try:
                    return self._revalidate(route, reference)
                finally:
                    q.release_fill(self.db, key, token)
            self._wait(key)
        return self._revalidate(route, reference)

    def _stored(self, route: Route, reference: str, by_digest: bool) -> str | None:
        row = self.db.get_manifest(route.local_name, reference, by_digest)
        return None if row is None else row.digest

    def _fresh(self, route: Route, tag: str) -> Served | None:
        """Served from the cache without asking upstream, or None."""
        fresh = q.freshness(self.db, route.local_name, tag)
        if fresh is None:
            return None
        age = time.time() - fresh.checked_at
        if fresh.digest is None:
            if age < route.upstream.negative_ttl:
                self.count(route, "manifest", "negative")
                raise ManifestUnknown(detail={"name": route.local_name, "reference": tag})
            return None
        if age < route.upstream.tag_ttl and self._stored(route, tag, False) == fresh.digest:
            return self.count(route, "manifest", "hit", Served("hit"))
        return None

    def _revalidate(self, route: Route, tag: str) -> Served:
        client = self.client(route.upstream)
        url = client.url(route.remote_name, "manifests", tag)
        current = self._stored(route, tag, False)
        try:
            if current is None:  # nothing cached: the GET is needed anyway
                return self._fetch(route, tag)
            self.check_rate_limited(route)
            with client.open("HEAD", url, client.scope(route.remote_name),
                             MANIFEST_ACCEPT) as response:
                status = response.status_code
                digest = response.headers.get("Docker-Content-Digest", "")
                retry = response.headers.get("Retry-After")
            if status == 404:
                self.not_found(route, tag, ManifestUnknown)
            if status != 200:
                raise self.status_error(route, status, retry)
            if current is not None and digest == current:
                q.record_check(self.db, route.local_name, tag, route.upstream.name, digest)
                self.succeeded(route, client)
                return self.count(route, "manifest", "revalidated", Served("revalidated"))
            if is_digest(digest) and self._stored(route, digest, True):
                fetched = self._retag(route, tag, digest)  # seen before: no GET needed
            else:
                fetched = self._fetch(route, tag, expected=digest or None)
            return fetched
        except UpstreamError as exc:
            stale = self._stale(route, tag, current, exc)
            if stale is not None:
                return stale
            raise self.failed(route, exc) from exc

    def _stale(self, route: Route, tag: str, current: str | None,
               exc: UpstreamError) -> Served | None:
        self.record_failure(route, exc)
        if current is None:
            return None
        fresh = q.freshness(self.db, route.local_name, tag)
        age = None if fresh is None else time.time() - fresh.checked_at
        if age is not None and age > route.upstream.max_stale:
            return None
        log.warning("mirror %s: serving stale %s:%s (%s; last checked %s s ago)",
                    route.upstream.name, route.local_name, tag, exc.reason,
                    "never" if age is None else int(age))
        return self.count(route, "manifest", "stale", Served("stale", age))

    def _retag(self, route: Route, tag: str, digest: str) -> Served:
        row = self.db.get_manifest(route.local_name, digest, True)
        assert row is not None
        self.registry.put_manifest(route.local_name, tag, row.payload, row.media_type,
                                   mirrored=True)
        q.record_check(self.db, route.local_name, tag, route.upstream.name, digest)
        return self.count(route, "manifest", "revalidated", Served("revalidated"))

    def _fetch(self, route: Route, reference: str, expected: str | None = None) -> Served:
        """GET the manifest upstream, verify its digest, store it (tagged when a tag).
        Raises UpstreamError when upstream fails (the caller decides: stale or error)."""
        client = self.client(route.upstream)
        limit = self.registry.options.max_manifest_size
        self.check_rate_limited(route)
        with client.open("GET", client.url(route.remote_name, "manifests", reference),
                         client.scope(route.remote_name), MANIFEST_ACCEPT) as response:
            status = response.status_code
            if status == 404:
                self.not_found(route, reference, ManifestUnknown)
            if status != 200:
                raise self.status_error(route, status, response.headers.get("Retry-After"))
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = response.headers.get("Docker-Content-Digest") or None
            payload = bytearray()
            for chunk in response.raw.stream(65536, decode_content=True):
                payload += chunk
                if len(payload) > limit:
                    raise UpstreamError(f"{route.upstream.name} sent a manifest over "
                                        f"{limit} bytes", "status", 502)
        metrics.MIRROR_UPSTREAM_BYTES.labels(route.upstream.name).inc(len(payload))
        self.succeeded(route, client)
        try:
            pushed = self.registry.put_manifest(route.local_name, reference, bytes(payload),
                                                media_type or None, mirrored=True)
        except RegistryError as exc:
            log.warning("mirror %s: %s@%s from upstream refused: %s", route.upstream.name,
                        route.remote_name, reference, exc.message)
            raise UpstreamUnavailable(
                f"upstream {route.upstream.name} sent a manifest this registry refuses: "
                f"{exc.message}", {"reference": reference}, status=502) from exc
        for claimed in (expected, header_digest):
            if claimed and is_digest(claimed) and claimed.split(":")[0] == "sha256" \
                    and claimed != pushed.digest and not is_digest(reference):
                log.warning("mirror %s: %s:%s digest %s, upstream said %s", route.upstream.name,
                            route.remote_name, reference, pushed.digest, claimed)
        q.record_check(self.db, route.local_name, reference, route.upstream.name, pushed.digest)
        return self.count(route, "manifest", "miss", Served("miss"))

    def _single_flight(self, route: Route, reference: str, work: object) -> Served:
        key = f"manifest:{route.local_name}:{reference}"
        for _ in range(3):
            if self._stored(route, reference, True):
                return self.count(route, "manifest", "hit", Served("hit"))
            token = uuid.uuid4().hex
            if q.take_fill(self.db, key, token, route.upstream.name,
                           self.settings.fill_lease_seconds):
                try:
                    return work()  # type: ignore[operator]
                finally:
                    q.release_fill(self.db, key, token)
            self._wait(key)
        return work()  # type: ignore[operator]

    def _wait(self, key: str) -> None:
        deadline = time.monotonic() + self.settings.wait_seconds
        pause = 0.05
        while q.fill_in_progress(self.db, key) and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    # -- tag lists ----------------------------------------------------------
    def tags(self, route: Route) -> list[str] | None:
        """The upstream's tags of the repository, sorted (as Distribution's proxy
        answers); None when upstream cannot answer (the cached tags are listed then)."""
        try:
            return sorted(set(upstream_tags(self, route)))
        except UpstreamError as exc:
            self.record_failure(route, exc)
            log.warning("mirror %s: tag list of %s from the cache (%s)", route.upstream.name,
                        route.remote_name, exc.reason)
            return None
