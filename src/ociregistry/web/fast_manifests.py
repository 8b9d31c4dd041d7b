"""Manifest HEAD/GET by tag or digest, answered in front of Flask (the pull's hot path).

On a 2-core box throughput follows the server's CPU per request, and a manifest
HEAD through Flask spent most of its 200-250 µs in werkzeug's request and response
objects, local proxies, the hooks and dispatch; the lookup itself is 6-16 µs. This
WSGI middleware sits between the client-address middleware (web/proxies.py) and
Flask and answers the common success path itself, doing what the Flask route does
step for step with the same functions: the request id (observability), the actor,
authentication and authorization (``AuthService``: anonymous, htpasswd, tokens,
the repository rules), the core's ``Registry.manifest`` with the client's Accept
list (index fallback included), the pull record and pull event of a GET, and the
metrics and access-log line once the body is sent (``observability.request_done``).
The answer is Flask's byte for byte: status, headers in the same order, body.

Everything else goes to Flask untouched, before anything was counted or written:
other methods and paths, a query string, a request body, cookies, conditional and
Range headers, credentials not already checked by this process (a first Basic
login runs bcrypt and the failed-attempt limits there), robots (their checks record
use), any refusal (401/403 and their challenge), any error of the lookup (unknown
manifest or repository, a database outage), names under a mirror's upstream prefix
(pull-through cache; with a default upstream the whole route is off), and all of it
when per-address or per-user rate limits are on (their check writes to the index).
tests/api/test_fast_manifests.py holds the two answers equal over a matrix of
requests in process; tests/api/test_fast_manifests_server.py through gunicorn.

Tag -> digest is read from the index on every request, as Flask's route does:
nothing is cached here, so a tag moved by another worker or instance is seen at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ociregistry.auth.rules import PULL, is_robot
from ociregistry.auth.service import ANONYMOUS, AuthService, Principal
from ociregistry.core.actor import SYSTEM, Actor, set_actor
from ociregistry.core.names import validate_name
from ociregistry.mirror.routing import mirrored_prefix
from ociregistry.runtime import Runtime
from ociregistry.web import auth as access
from ociregistry.web.observability import new_request_id, request_done
from ociregistry.web.registry_api import _ROUTE_LABELS

ROUTE = _ROUTE_LABELS["manifest"]  # the metrics label Flask's dispatch gives
EXTENSION = "ociregistry.fast_manifests"  # app.extensions: this middleware (tests switch it)
_MARK = "/manifests/"
# Request headers that send a request to Flask: Flask's manifest route ignores the
# conditional ones, but an unusual request is not worth a second code path.
_UNUSUAL = ("QUERY_STRING", "HTTP_COOKIE", "HTTP_TRANSFER_ENCODING", "HTTP_RANGE",
            "HTTP_IF_RANGE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE",
            "HTTP_IF_UNMODIFIED_SINCE")

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class _Answer:
    """The body (the manifest, or nothing for a HEAD); the server's ``close`` logs it."""

    __slots__ = ("body", "finish")

    def __init__(self, body: tuple[bytes, ...], finish: tuple[Any, ...]) -> None:
        self.body = body
        self.finish = finish

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        request_done(*self.finish)


class FastManifests:
    """WSGI middleware: plain manifest reads answered here, everything else by ``app``."""

    def __init__(self, app: WSGIApp, runtime: Runtime, extensions: dict[str, Any]) -> None:
        self.app = app
        self.registry = runtime.registry
        settings = runtime.settings
        self.log_access = settings.log.access_log
        # Names under a mirror's upstream prefix are routed (and may be fetched) by
        # Flask's route; a default upstream may take any name: then Flask answers all.
        mirror = settings.mirror
        self.mirror = mirror if mirror.upstreams else None
        self.enabled = settings.http.fast_manifest_reads and (
            self.mirror is None or self.mirror.default is None)
        self._extensions = extensions  # auth's objects, registered after this wraps Flask
        self._auth: AuthService | None = None

    def _service(self) -> AuthService | None:
        """The auth service, or None when a rate limit is on (then Flask answers all)."""
        auth = self._auth
        if auth is None:
            by_address, by_user = self._extensions[access.EXTENSION + ".limits"]
            if by_address is not None or by_user is not None:
                self.enabled = False
                return None
            auth = self._auth = self._extensions[access.EXTENSION]
        return auth

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO") or ""
        if (
            not self.enabled
            or (method != "HEAD" and method != "GET")
            or not path.startswith("/v2/")
            or _MARK not in path
        ):
            return self.app(environ, start_response)
        answer = self._answer(environ, start_response, method, path)
        if answer is None:
            return self.app(environ, start_response)
        return answer

    def _answer(self, environ: dict[str, Any], start_response: Any, method: str,
                path: str) -> _Answer | None:
        for key in _UNUSUAL:
            if environ.get(key):
                return None
        if environ.get("CONTENT_LENGTH") not in (None, "", "0"):
            return None
        # Flask's dispatch: name greedy up to the last /manifests/, a reference without
        # a slash; a doubled slash would be redirected by its URL map.
        name, _, ref = path[4:].rpartition(_MARK)
        if not name or not ref or "/" in ref or "//" in path or not ref.isascii():
            return None
        try:
            validate_name(name)
        except Exception:  # noqa: BLE001 (Flask answers the error)
            return None
        if self.mirror is not None and mirrored_prefix(self.mirror, name) is not None:
            return None
        auth = self._service()
        if auth is None:
            return None
        who = ANONYMOUS
        if auth.enabled:
            found = _principal(auth, environ.get("HTTP_AUTHORIZATION"))
            if found is None or not auth.can(found, name, PULL):
                return None  # a challenge, a refusal or a first login: Flask's
            who = found
        started = time.perf_counter()
        request_id = new_request_id(environ.get("HTTP_X_REQUEST_ID"))
        client = environ.get("REMOTE_ADDR")
        actor = Actor("anonymous", None, client, request_id)
        if auth.enabled:
            actor = actor.as_user(who.user, robot=False)
        set_actor(actor)
        try:
            accept = environ.get("HTTP_ACCEPT")
            try:
                row = self.registry.manifest(name, ref, _accept_list(accept) if accept else [])
            except Exception:  # noqa: BLE001 (unknown, invalid, outage: Flask answers it)
                return None
            payload = row.payload
            if type(payload) is not bytes:
                return None
            if method == "GET":  # a pull: counted and an event, both batched
                self.registry.record_pull(name, ref, row.digest)
                self.registry.manifest_pulled(name, ref, row)
        finally:
            set_actor(SYSTEM)  # as Flask's teardown: gthread reuses the thread
        size = len(payload)
        headers = [
            ("Content-Type", row.media_type),
            ("Content-Length", str(size)),
            ("Docker-Content-Digest", row.digest),
            ("ETag", f'"{row.digest}"'),
        ]
        if row.subject:
            headers.append(("OCI-Subject", row.subject))
        headers.append(("X-Request-ID", request_id))
        headers.append(("Docker-Distribution-API-Version", "registry/2.0"))
        start_response("200 OK", headers)
        return _Answer(
            (payload,) if method == "GET" else (),
            (self.log_access, started, ROUTE, method, 200, 0, size, client or "-", path,
             who.user or "-", request_id),
        )


def _accept_list(header: str) -> list[str]:
    """registry_api's ``_accept_list`` over the one Accept value the server passes."""
    return [part.split(";", 1)[0].strip() for part in header.split(",") if part.strip()]


def _principal(auth: AuthService, header: str | None) -> Principal | None:
    """Who is calling, when that needs nothing Flask's hook would record; else None.

    No credentials: anonymous. Basic (htpasswd mode): only credentials this process
    verified a moment ago (no bcrypt, no failed-attempt bookkeeping). Bearer (token
    mode): a verified token not issued to a robot. Robots, bad or unexpected
    credentials: None (Flask's hook decides, counts and challenges).
    """
    if not header:
        return ANONYMOUS
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    try:
        if scheme == "basic" and auth.mode == "basic":
            pair = access._basic_pair(value)
            if pair is None:
                return ANONYMOUS  # "Basic Og==": no credentials (containers/image)
            user, password = pair
            htpasswd = auth.htpasswd
            if is_robot(user) or htpasswd is None or not htpasswd.is_verified(user, password):
                return None
            return auth.basic(user, password)
        if scheme == "bearer" and auth.mode == "token" and auth.verifier is not None:
            verified = auth.verifier.verify(value)
            if verified.robot is not None or is_robot(verified.subject):
                return None  # AuthService.bearer checks (and records) the robot's token
            return Principal(verified.subject or None, "token", verified)
    except Exception:  # noqa: BLE001 (bad credentials: Flask's 401 and its metric)
        return None
    return None
