"""The HTTP client of one upstream registry.

One ``requests`` session per upstream (connection reuse, its CA file and client
certificate), connect and read timeouts, a cap on requests in flight and on
requests per second (per worker process), authentication (auth.py), and
redirects followed by hand: only to the upstream's own host or to its
``redirect_hosts``, and without the Authorization header when the host changes.
No client header is ever forwarded upstream, and nothing upstream says about its
own authentication is ever shown to a client.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urljoin, urlsplit

from ociregistry import metrics
from ociregistry.lazy_import import lazy_module
from ociregistry.mirror.auth import TokenError, UpstreamAuth
from ociregistry.mirror.settings import UpstreamSettings

requests = lazy_module("requests")  # loaded when a mirror first talks upstream

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
# Docker Hub's token service and blob CDN, allowed for a Docker Hub upstream.
DOCKER_HUB_EXTRA_HOSTS = ("auth.docker.io", "production.cloudflare.docker.com")
_REMAINING = re.compile(r"^\s*([0-9]{1,12})")
MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.oci.artifact.manifest.v1+json",
))


class UpstreamError(Exception):
    """The upstream could not answer: ``kind`` is timeout, connection, tls, status,
    redirect, auth, rate_limited or busy; ``status`` its HTTP status, if any."""

    def __init__(self, reason: str, kind: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds of a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value), 86400))
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, min(parsedate_to_datetime(value).timestamp() - time.time(), 86400.0))
    except (TypeError, ValueError):
        return None


class UpstreamClient:
    """Requests to one upstream, within its caps."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.host = settings.host
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self.allowed_hosts = {settings.host, *settings.redirect_hosts}
        if settings.is_docker_hub:
            self.allowed_hosts.update(DOCKER_HUB_EXTRA_HOSTS)
        session = requests.Session()
        session.trust_env = False  # no proxy variables, no ~/.netrc credentials
        if settings.client_cert:
            session.cert = (settings.client_cert, settings.client_key)
        session.headers["User-Agent"] = "python-docker-registry-mirror"
        self.session = session
        self.auth = UpstreamAuth(session, settings.username, settings.password,
                                 self.host_allowed, self.timeout, self.verify)
        self._slots = threading.BoundedSemaphore(settings.max_concurrency)
        self._rate_lock = threading.Lock()
        self._next_slot = 0.0
        self.ratelimit_remaining: int | None = None

    def host_allowed(self, netloc: str) -> bool:
        netloc = netloc.lower()
        # An entry without a port allows any port of that host; one with a port, that one;
        # "*.cdn.example" any subdomain of cdn.example (not cdn.example itself).
        host = netloc.rsplit(":", 1)[0]
        if netloc in self.allowed_hosts or host in self.allowed_hosts:
            return True
        return any(entry.startswith("*.") and host.endswith(entry[1:])
                   for entry in self.allowed_hosts)

    def verify(self, netloc: str) -> bool | str:
        """TLS verification for a host: the upstream's CA file for its own host."""
        return (self.settings.ca_file or True) if netloc.lower() == self.host else True

    @staticmethod
    def scope(repository: str) -> str:
        return f"repository:{repository}:pull"

    def url(self, repository: str, kind: str, reference: str) -> str:
        """/v2/<repository>/<kind>/<reference> on the upstream (parts already validated)."""
        return f"{self.settings.url}/v2/{repository}/{kind}/{quote(reference, safe=':')}"

    @contextmanager
    def open(self, method: str, url: str, scope: str,
             accept: str | None = None) -> Iterator[requests.Response]:
        """An upstream response (body not read yet), within the caps; closed after."""
        if not self._slots.acquire(timeout=self.settings.read_timeout):
            raise UpstreamError(f"{self.settings.max_concurrency} requests to {self.name} "
                                "already in flight", "busy")
        response = None
        try:
            self._pace()
            response = self._send(method, url, scope, accept)
            yield response
        finally:
            if response is not None:
                response.close()
            self._slots.release()

    def _pace(self) -> None:
        rate = self.settings.max_requests_per_second
        if not rate:
            return
        with self._rate_lock:
            now = time.monotonic()
            start = max(self._next_slot, now)
            wait = start - now
            if wait > self.settings.read_timeout:
                raise UpstreamError(f"request rate cap of {self.name} reached", "busy")
            self._next_slot = start + 1.0 / rate
        if wait > 0:
            time.sleep(wait)

    def _send(self, method: str, url: str, scope: str,
              accept: str | None) -> requests.Response:
        headers = {"Accept": accept} if accept else {}
        try:
            authorization = self.auth.header(scope)
        except TokenError as exc:
            self._count(method, "auth", url)
            raise UpstreamError(str(exc), "auth", exc.status) from exc
        if authorization:
            headers["Authorization"] = authorization
        retried_auth = False
        for _ in range(MAX_REDIRECTS + 1):
            response = self._request(method, url, headers)
            own_host = urlsplit(url).netloc.lower() == self.host
            if response.status_code == 401 and own_host and not retried_auth:
                retried_auth = True  # refresh once (a new or an expired token)
                try:
                    again = self.auth.challenge(response, scope)
                except TokenError as exc:
                    response.close()
                    raise UpstreamError(str(exc), "auth", exc.status) from exc
                if again:
                    response.close()
                    authorization = self.auth.header(scope)
                    if authorization:
                        headers["Authorization"] = authorization
                    continue
            if response.status_code in REDIRECTS and response.headers.get("Location"):
                target = urljoin(url, response.headers["Location"])
                response.close()
                parts = urlsplit(target)
                if parts.scheme not in ("http", "https") or not self.host_allowed(parts.netloc):
                    self._count(method, "redirect", url)
                    raise UpstreamError(f"{self.name} redirected to {parts.netloc[:100]!r}, "
                                        "which is not an allowed host (redirect_hosts)",
                                        "redirect")
                if parts.netloc.lower() != self.host:
                    headers.pop("Authorization", None)  # credentials stay with the upstream
                if response.status_code == 303 and method != "HEAD":
                    method = "GET"
                url = target
                continue
            return response
        raise UpstreamError(f"{self.name}: too many redirects", "redirect")

    def _request(self, method: str, url: str, headers: dict[str, str]) -> requests.Response:
        verify = self.verify(urlsplit(url).netloc)
        try:
            response = self.session.request(method, url, headers=headers, stream=True,
                                            allow_redirects=False, timeout=self.timeout,
                                            verify=verify)
        except requests.exceptions.SSLError as exc:
            self._count(method, "tls", url)
            raise UpstreamError(f"TLS with {self.name} failed", "tls") from exc
        except requests.Timeout as exc:
            self._count(method, "timeout", url)
            raise UpstreamError(f"{self.name} timed out", "timeout") from exc
        except requests.RequestException as exc:
            self._count(method, "connection", url)
            raise UpstreamError(f"{self.name} unreachable ({type(exc).__name__})",
                                "connection") from exc
        self._count(method, str(response.status_code), url)
        remaining = (response.headers.get("RateLimit-Remaining")
                     or response.headers.get("X-RateLimit-Remaining"))
        match = _REMAINING.match(remaining or "")
        if match:
            self.ratelimit_remaining = int(match[1])
            metrics.MIRROR_RATELIMIT_REMAINING.labels(self.name).set(self.ratelimit_remaining)
        return response

    def _count(self, method: str, status: str, url: str = "") -> None:
        path = urlsplit(url).path
        kind = "manifest" if "/manifests/" in path else "blob" if "/blobs/" in path else "other"
        metrics.MIRROR_UPSTREAM_REQUESTS.labels(self.name, kind, method, status).inc()

    def close(self) -> None:
        self.session.close()
