"""Manifest and blob HEAD/GET answered in front of Flask (the pull's hot paths).

On a 2-core box throughput follows the server's CPU per request, and a manifest
HEAD through Flask spent most of its 200-250 µs in werkzeug's request and response
objects, local proxies, the hooks and dispatch; the lookup itself is 6-16 µs. This
WSGI middleware sits between the client-address middleware (web/proxies.py) and
Flask and answers the common success path itself, doing what the Flask route does
step for step with the same functions: the request id (observability), the actor,
authentication and authorization (``AuthService``: anonymous, htpasswd, tokens,
the repository rules), then for a manifest (by tag or digest) the core's
``Registry.manifest`` with the client's Accept list (index fallback included) and
the pull record and pull event of a GET, for a blob the core's ``Registry.blob``
and web/fast_blobs.py's answer from the local file (sendfile for a GET), or its
BLOB_UNKNOWN (every push's first look at each layer is such a blob HEAD, whether the
repository exists yet or not: the same 404 envelope either way), and the
metrics and access-log line once the body is sent (``observability.request_done``).
The answer is Flask's byte for byte: status, headers in the same order, body.

Everything else goes to Flask untouched, before anything was counted or written:
other methods and paths, a query string, a request body, cookies, conditional and
Range headers, credentials not already checked by this process (a first Basic
login runs bcrypt and the failed-attempt limits there), robots (their checks record
use), any refusal (401/403 and their challenge), any other error of the lookup (unknown
manifest or repository, an invalid digest, a database outage, a blob's file gone, a blob
store that redirects or streams: S3), names under a mirror's upstream prefix
(pull-through cache; with a default upstream the whole route is off), and all of it
when per-address or per-user rate limits are on (their check writes to the index).
tests/api/test_fast_reads.py holds the two answers equal over a matrix of
requests in process; tests/api/test_fast_reads_server.py through gunicorn.
``GET``/``HEAD /v2/`` and a tags list GET take the same steps here (``caller``,
``begin``) and are answered by web/fast_listings.py.

Tag -> digest is read from the index on every request, as Flask's route does:
nothing is cached here, so a tag moved by another worker or instance is seen at once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from werkzeug.wsgi import wrap_file

from ociregistry.auth.rules import PULL, is_robot
from ociregistry.auth.service import ANONYMOUS, AuthService, Principal
from ociregistry.core.actor import SYSTEM, Actor, set_actor
from ociregistry.core.errors import BlobUnknown
from ociregistry.core.names import validate_name
from ociregistry.mirror.routing import mirrored_prefix
from ociregistry.runtime import Runtime
from ociregistry.storage.write_gate import opened_for_pull
from ociregistry.web import auth as access
from ociregistry.web import fast_blobs, fast_listings
from ociregistry.web.fast_listings import Answer as _Answer
from ociregistry.web.fast_route import FastRoute, WSGIApp
from ociregistry.web.observability import new_request_id, request_done
from ociregistry.web.registry_api import _ROUTE_LABELS

# The metrics labels Flask's dispatch gives.
MANIFEST_ROUTE, BLOB_ROUTE = _ROUTE_LABELS["manifest"], _ROUTE_LABELS["blob"]
EXTENSION = "ociregistry.fast_reads"  # app.extensions: this middleware (tests switch it)
_MANIFESTS, _BLOBS, _UPLOADS = "/manifests/", "/blobs/", "/blobs/uploads/"
# Request headers that send a request to Flask: Range and If-* (Flask's blob route
# answers them; its manifest route ignores them, but an unusual request is not worth
# a second code path), cookies (the UI's session), a query string, a body.
# The tags list reads its own query (web/fast_listings.py): the headers alone.
UNUSUAL_HEADERS = ("HTTP_COOKIE", "HTTP_TRANSFER_ENCODING", "HTTP_RANGE", "HTTP_IF_RANGE",
                   "HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE",
                   "HTTP_IF_UNMODIFIED_SINCE")
_UNUSUAL = ("QUERY_STRING", *UNUSUAL_HEADERS)

class FastReads(FastRoute):
    """WSGI middleware: plain manifest and blob reads (and, through web/fast_listings.py,
    /v2/ and tags lists) answered here, the rest by ``app``."""

    def __init__(self, app: WSGIApp, runtime: Runtime, extensions: dict[str, Any]) -> None:
        super().__init__(app, runtime, extensions, runtime.settings.http.fast_reads)
        self.storage = runtime.storage

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO") or ""
        if not self.enabled or (method != "HEAD" and method != "GET") or \
                not path.startswith("/v2/"):
            return self.app(environ, start_response)
        if path == "/v2/" or path.endswith(fast_listings.TAGS_LIST):
            answer = fast_listings.answer(self, environ, start_response, method, path)
        elif _MANIFESTS in path or _BLOBS in path:
            answer = self._answer(environ, start_response, method, path)
        else:
            answer = None
        if answer is None:
            return self.app(environ, start_response)
        return answer

    def caller(self, environ: dict[str, Any], name: str | None) -> Principal | None:
        """Who is calling, when this route may answer them; None: Flask's (a rate limit,
        credentials to check or record, a refusal or challenge). ``name``: pull on that
        repository is needed; None: the base endpoint, which challenges anonymous callers
        when authentication is on (web/auth.py's hook)."""
        auth = self._service()
        if auth is None:
            return None
        if not auth.enabled:
            return ANONYMOUS
        found = _principal(auth, environ.get("HTTP_AUTHORIZATION"))
        if found is None:
            return None  # a challenge, a refusal or a first login: Flask's
        if name is None:
            return None if found is ANONYMOUS else found
        return found if auth.can(found, name, PULL) else None

    def begin(self, environ: dict[str, Any], method: str, path: str,
              who: Principal) -> list[Any]:
        """The request id and the actor (observability's and auth's before-request hooks);
        the fields ``request_done`` will log (route, status and size still to fill in).
        The caller sets the actor back to SYSTEM when it is done (Flask's teardown)."""
        started = time.perf_counter()
        request_id = new_request_id(environ.get("HTTP_X_REQUEST_ID"))
        client = environ.get("REMOTE_ADDR")
        actor = Actor("anonymous", None, client, request_id)
        if self._auth is not None and self._auth.enabled:
            actor = actor.as_user(who.user, robot=False)
        set_actor(actor)
        return [self.log_access, started, "", method, 200, 0, 0, client or "-", path,
                who.user or "-", request_id]

    def plain_request(self, environ: dict[str, Any], path: str, query: bool = False) -> bool:
        """No header that makes Flask's answer differ or need Flask, no query string
        (unless ``query``: the caller reads it), no body, no doubled slash (Flask's URL
        map has its own answer)."""
        for key in UNUSUAL_HEADERS if query else _UNUSUAL:
            if environ.get(key):
                return False
        return environ.get("CONTENT_LENGTH") in (None, "", "0") and "//" not in path

    def local_name(self, name: str) -> bool:
        """A valid repository name, not under a mirror's upstream prefix."""
        try:
            validate_name(name)
        except Exception:  # noqa: BLE001 (Flask answers the error)
            return False
        return self.mirror is None or mirrored_prefix(self.mirror, name) is None

    def _answer(self, environ: dict[str, Any], start_response: Any, method: str,
                path: str) -> Iterable[bytes] | None:
        if not self.plain_request(environ, path):
            return None
        routed = _route(path[4:])
        if routed is None:
            return None
        kind, name, ref = routed
        if not self.local_name(name):
            return None
        who = self.caller(environ, name)
        if who is None:
            return None
        finish = self.begin(environ, method, path, who)
        try:
            if kind == "manifest":
                return self._manifest(environ, start_response, method, name, ref, finish)
            return self._blob(environ, start_response, method, name, ref, finish)
        finally:
            set_actor(SYSTEM)  # as Flask's teardown: gthread reuses the thread

    def _manifest(self, environ: dict[str, Any], start_response: Any, method: str, name: str,
                  ref: str, finish: list[Any]) -> Iterable[bytes] | None:
        """registry_api.get_manifest and observability's after-request hook, in one."""
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
        size = len(payload)
        headers = [
            ("Content-Type", row.media_type),
            ("Content-Length", str(size)),
            ("Docker-Content-Digest", row.digest),
            ("ETag", f'"{row.digest}"'),
        ]
        if row.subject:
            headers.append(("OCI-Subject", row.subject))
        headers.append(("X-Request-ID", finish[-1]))
        headers.append(("Docker-Distribution-API-Version", "registry/2.0"))
        start_response("200 OK", headers)
        finish[2], finish[6] = MANIFEST_ROUTE, size
        return _Answer((payload,) if method == "GET" else (), tuple(finish))

    def _blob(self, environ: dict[str, Any], start_response: Any, method: str, name: str,
              digest: str, finish: list[Any]) -> Iterable[bytes] | None:
        """registry_api.get_blob's local-file answer (web/fast_blobs.py's headers) and
        the hook's, logged when the server closes the body; redirects, blobs without a
        local file and missing files: Flask's."""
        try:
            blob = self.registry.blob(name, digest)
        except BlobUnknown as exc:  # not in this repository (or any): a push's first look
            if exc.status != 404 or exc.headers:
                return None
            return _unknown(start_response, method, exc, finish)
        except Exception:  # noqa: BLE001 (invalid, outage: Flask answers it)
            return None
        if blob.path is None or (method == "GET" and self.storage.blob_url(blob.digest)):
            return None
        try:
            stat = os.stat(blob.path)
            # A large blob's GET keeps read-backs off the disk meanwhile (write_gate.py).
            file = (opened_for_pull(self.storage, blob.path, stat.st_size)
                    if method == "GET" else None)
        except OSError:
            return None
        headers = fast_blobs.plain_headers(blob.path, stat, blob.digest)
        headers.append(("Docker-Content-Digest", blob.digest))
        headers.append(("X-Request-ID", finish[-1]))
        headers.append(("Docker-Distribution-API-Version", "registry/2.0"))
        finish[2], finish[6] = BLOB_ROUTE, stat.st_size
        start_response("200 OK", headers)
        if file is None:
            return _Answer((), tuple(finish))
        # The server's file wrapper (sendfile); logged when the server closes it.
        body = wrap_file(environ, file)
        own_close = body.close

        def close() -> None:
            try:
                own_close()
            finally:
                request_done(*finish)

        try:
            body.close = close  # type: ignore[method-assign]
        except AttributeError:  # a wrapper that takes no attribute: iterate it instead
            return _Passed(body, tuple(finish))
        return body


def _unknown(start_response: Any, method: str, exc: BlobUnknown,
             finish: list[Any]) -> Iterable[bytes]:
    """web/errors.py's envelope for the core's BLOB_UNKNOWN (the same JSON, the same
    headers in Flask's order); a HEAD sends none of it but says its length, as Flask."""
    body = json.dumps({"errors": [{"code": exc.code, "message": exc.message,
                                   "detail": exc.detail}]}).encode()
    size = len(body)
    start_response("404 NOT FOUND", [
        ("Content-Type", "application/json"),
        ("Content-Length", str(size)),
        ("X-Request-ID", finish[-1]),
        ("Docker-Distribution-API-Version", "registry/2.0"),
    ])
    finish[2], finish[4], finish[6] = BLOB_ROUTE, 404, size
    return _Answer((body,) if method == "GET" else (), tuple(finish))


class _Passed:
    """A body iterated through (no passthrough), logged when closed."""

    __slots__ = ("body", "finish")

    def __init__(self, body: Any, finish: tuple[Any, ...]) -> None:
        self.body, self.finish = body, finish

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            self.body.close()
        finally:
            request_done(*self.finish)


def _route(rest: str) -> tuple[str, str, str] | None:
    """(kind, name, reference) as registry_api's dispatch matches ``rest`` (the path
    after /v2/): a manifest, else not an upload, else a blob; the name greedy, the
    last part without a slash. None: another endpoint."""
    name, _, ref = rest.rpartition(_MANIFESTS)
    if name and ref and "/" not in ref:
        return ("manifest", name, ref) if ref.isascii() else None
    name, _, upload = rest.rpartition(_UPLOADS)
    if name and "/" not in upload:
        return None
    name, _, digest = rest.rpartition(_BLOBS)
    if name and digest and "/" not in digest and digest.isascii():
        return "blob", name, digest
    return None


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
