"""What an upstream's answer means, shared by manifest pulls, blob fills and warming.

``Outcomes`` holds one HTTP client per upstream and turns what upstream did into
the registry's state and answers: a hit/miss counted, a 404 remembered for
``negative_ttl``, a 429 remembered until its Retry-After (every worker stops
asking), a failure recorded for the upstream's status page and turned into the
OCI error a client gets when nothing usable is cached. ``MirrorService`` builds
on it; the blob fills (fill.py) and tag lists (upstream_tags) need only this.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin

from ociregistry import metrics
from ociregistry.core.errors import ManifestUnknown, NameUnknown, RegistryError, TooManyRequests
from ociregistry.core.registry import Registry
from ociregistry.metadata import mirror_queries as q
from ociregistry.mirror.routing import Route
from ociregistry.mirror.settings import MirrorSettings, UpstreamSettings
from ociregistry.mirror.upstream import UpstreamClient, UpstreamError, retry_after_seconds

log = logging.getLogger(__name__)
OK_WRITE_INTERVAL = 30.0  # seconds between last_ok_at writes per upstream and process
MAX_TAG_PAGES = 100


class UpstreamUnavailable(RegistryError):
    code = "UNAVAILABLE"
    status = 503
    default_message = "the upstream registry is unavailable"


@dataclass(frozen=True)
class Served:
    """How a mirrored manifest request was answered: hit, revalidated, miss or stale."""

    result: str
    stale_seconds: float | None = None  # for stale: seconds since the last good check


class Outcomes:
    def __init__(self, settings: MirrorSettings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.db = registry.db
        self._clients: dict[str, UpstreamClient] = {}
        self._lock = threading.Lock()
        self._ok_written: dict[str, float] = {}

    def client(self, upstream: UpstreamSettings) -> UpstreamClient:
        with self._lock:
            client = self._clients.get(upstream.name)
            if client is None:
                client = self._clients[upstream.name] = UpstreamClient(upstream)
            return client

    def check_negative(self, route: Route, reference: str, error: type[RegistryError]) -> None:
        fresh = q.freshness(self.db, route.local_name, reference)
        if fresh is not None and fresh.digest is None and \
                time.time() - fresh.checked_at < route.upstream.negative_ttl:
            self.count(route, "manifest" if error is ManifestUnknown else "blob", "negative")
            raise error(detail={"name": route.local_name, "reference": reference})

    def not_found(self, route: Route, reference: str, error: type[RegistryError]) -> None:
        """Upstream said 404: remembered for negative_ttl; the client gets ``error``."""
        q.record_check(self.db, route.local_name, reference, route.upstream.name, None)
        raise error(f"unknown to upstream {route.upstream.name}",
                    {"name": route.local_name, "reference": reference})

    def check_rate_limited(self, route: Route) -> None:
        state = q.upstream_state(self.db, route.upstream.name)
        until = state.rate_limited_until if state else None
        if until is not None and until > time.time():
            raise UpstreamError(f"{route.upstream.name} asked to wait (429) until "
                                f"{time.strftime('%H:%M:%S', time.gmtime(until))} UTC",
                                "rate_limited", None, until - time.time())

    def status_error(self, route: Route, status: int, retry_after: str | None) -> UpstreamError:
        kind = "rate_limited" if status == 429 else "status"
        return UpstreamError(f"{route.upstream.name} answered {status}", kind, status,
                             retry_after_seconds(retry_after))

    def record_failure(self, route: Route, exc: UpstreamError) -> None:
        values: dict[str, object] = {"last_error": exc.reason, "last_error_at": time.time()}
        if exc.status == 429:  # upstream's own 429 (not our remembering of it)
            values["rate_limited_until"] = time.time() + (exc.retry_after or 60.0)
        try:
            q.update_upstream(self.db, route.upstream.name, **values)
        except Exception:  # noqa: BLE001 - state is advisory; the answer matters more
            log.exception("mirror: cannot record the state of %s", route.upstream.name)

    def failed(self, route: Route, exc: UpstreamError) -> RegistryError:
        """The OCI error for a request upstream failed to answer (no cached copy)."""
        if not (exc.kind == "rate_limited" and exc.status is None):
            self.record_failure(route, exc)
        return self.unavailable(route, exc)

    def unavailable(self, route: Route, exc: UpstreamError) -> RegistryError:
        log.warning("mirror %s: %s (%s)", route.upstream.name, exc.reason, route.local_name)
        detail = {"upstream": route.upstream.name, "name": route.local_name}
        retry = str(int(exc.retry_after or 0) + 1) if exc.retry_after else "10"
        if exc.kind == "rate_limited":
            return TooManyRequests(f"upstream {route.upstream.name} is rate limiting this "
                                   "registry and nothing is cached", detail,
                                   headers={"Retry-After": retry})
        if exc.status in (401, 403):
            return NameUnknown(f"upstream {route.upstream.name} refuses this registry access "
                               f"to {route.remote_name} ({exc.status}): private or absent",
                               detail)
        return UpstreamUnavailable(f"upstream {route.upstream.name} is unavailable and "
                                   f"nothing usable is cached: {exc.reason}", detail,
                                   headers={"Retry-After": retry})

    def succeeded(self, route: Route, client: UpstreamClient) -> None:
        now = time.time()
        if now - self._ok_written.get(route.upstream.name, 0.0) < OK_WRITE_INTERVAL:
            return
        self._ok_written[route.upstream.name] = now
        try:
            q.update_upstream(self.db, route.upstream.name, last_ok_at=now,
                              ratelimit_remaining=client.ratelimit_remaining)
        except Exception:  # noqa: BLE001
            log.exception("mirror: cannot record the state of %s", route.upstream.name)

    def count(self, route: Route, kind: str, result: str, served: Served | None = None):
        metrics.MIRROR_REQUESTS.labels(route.upstream.name, kind, result).inc()
        return served


def upstream_tags(outcomes: Outcomes, route: Route) -> list[str]:
    """Every tag of the repository upstream (following Link pages on allowed hosts)."""
    client = outcomes.client(route.upstream)
    url = f"{route.upstream.url}/v2/{route.remote_name}/tags/list?n=1000"
    tags: list[str] = []
    for _ in range(MAX_TAG_PAGES):
        outcomes.check_rate_limited(route)
        with client.open("GET", url, client.scope(route.remote_name)) as response:
            if response.status_code == 404:
                return []
            if response.status_code != 200:
                raise outcomes.status_error(route, response.status_code,
                                            response.headers.get("Retry-After"))
            try:
                body = response.json()
            except ValueError as exc:
                raise UpstreamError(f"{route.upstream.name} sent a tag list that is not "
                                    "JSON", "status", 502) from exc
            link = response.headers.get("Link", "")
        tags.extend(t for t in (body.get("tags") or []) if isinstance(t, str))
        if 'rel="next"' not in link:
            break
        target = urljoin(url, link.split(";")[0].strip().strip("<>"))
        if not client.host_allowed(target.split("/")[2]):
            break
        url = target
    return tags
