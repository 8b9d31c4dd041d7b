"""A mount, a manifest PUT and the body-less upload requests answered in front of Flask.

Creating repositories (bench/loads.py: per repository a mount of the config blob,
then a manifest PUT) is a stream of small writes; on a 2-core box their throughput
follows the server's CPU per request, and about 40 % of that went to werkzeug's
request and response objects, Flask's context, hooks and dispatch (py-spy; the index
transaction itself is the same either way). A push's layers add two such requests
each that carry no body: the POST that opens an upload session and the PUT that ends
it after the PATCH. Like web/fast_reads.py for reads, this WSGI middleware (inside
it, in front of Flask) answers these requests itself, step for step with the
functions Flask's route and hooks call: the request id and actor (observability),
authentication and authorization (``AuthService``: push on the repository, pull on a
mount's source; the session's owner as ``web/auth.upload_owner``), the core's
``UploadService.mount``, ``start``, ``precheck`` + ``finish`` or
``Registry.put_manifest`` (quotas, session limits, immutable tags, tag history,
events, referrers, the commit on disk before the 201: all in the core, unchanged),
then the metrics and access-log line once the answer is sent
(``observability.request_done``).

Which requests: ``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<name>`` without
a body; ``POST /v2/<name>/blobs/uploads/`` with no query string and no body (a sha256
session, 202); ``PUT /v2/<name>/blobs/uploads/<id>?digest=<digest>`` with that one
parameter (plain or percent-encoded, as Go clients send it), no body and no
Content-Range (registry_api.put_upload's 201, or its RangeInvalid answer with Location
and Range); and ``PUT /v2/<name>/manifests/<reference>`` with a Content-Length within
the manifest limit and no query string (``?tag=`` goes to Flask). Everything else goes
to Flask untouched, before anything was read, counted or written: other paths and
methods (a PATCH always), other or repeated query parameters (a monolithic
``?digest=`` POST, ``digest-algorithm``), a body or Content-Range on an upload
request, cookies, chunked bodies, credentials not already checked by this process (a
first Basic login, robots), a caller the rules refuse (the challenge), a mirror's
names, rate limits on, and a mount that cannot be made (Flask tries it again, it rolls
back again, and Flask opens the upload).

Errors once the request is ours (the body read, the core's refusal such as an unknown
session or a wrong digest, an outage) are answered here with what Flask's error
handlers give (web/errors.py: the OCI envelope, 503 for a dependency down, 500
logged), never by sending the request on to Flask: a write must not run twice.
tests/api/test_fast_writes.py holds the answers (status, headers, body, log line,
metrics, events and tag history with their actor) equal to Flask's in process;
tests/api/test_fast_writes_server.py through gunicorn; tests/cluster/test_pg_fast_writes.py
on PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from werkzeug.exceptions import ClientDisconnected
from werkzeug.wsgi import get_input_stream

from ociregistry.auth.rules import PULL, PUSH
from ociregistry.auth.service import ANONYMOUS
from ociregistry.core.actor import SYSTEM, Actor, set_actor
from ociregistry.core.errors import ManifestInvalid, RangeInvalid, RegistryError
from ociregistry.core.names import validate_name
from ociregistry.mirror.routing import mirrored_prefix
from ociregistry.runtime import Runtime
from ociregistry.web import errors
from ociregistry.web.body import MalformedBody, body_chunks
from ociregistry.web.fast_listings import Answer
from ociregistry.web.fast_reads import _principal
from ociregistry.web.fast_route import FastRoute, WSGIApp
from ociregistry.web.observability import new_request_id
from ociregistry.web.registry_api import _ROUTE_LABELS, _receiving_body, _upload_location

MANIFEST_ROUTE, UPLOAD_ROUTE = _ROUTE_LABELS["manifest"], _ROUTE_LABELS["upload"]
EXTENSION = "ociregistry.fast_writes"  # app.extensions: this middleware (tests switch it)
_MANIFESTS, _UPLOADS = "/manifests/", "/blobs/uploads/"
# A cookie is the UI's session; a chunked body is framed by the server: Flask's.
_UNUSUAL = ("HTTP_COOKIE", "HTTP_TRANSFER_ENCODING")
# What werkzeug's Location handling (iri_to_uri) leaves as it is, so the header
# built here is Flask's: a digest or name with anything else goes to Flask.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._=-/")
# Flask's answer to a 201 without a body (registry_api's Response(status=201)).
_HTML = ("Content-Type", "text/html; charset=utf-8")


class _Answer(Answer):
    """An answer whose body may be a werkzeug response's (an error): closed first."""

    __slots__ = ()

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            super().close()


class FastWrites(FastRoute):
    """WSGI middleware: plain mounts and manifest PUTs answered here, the rest by ``app``."""

    def __init__(self, app: WSGIApp, runtime: Runtime, extensions: dict[str, Any]) -> None:
        super().__init__(app, runtime, extensions, runtime.settings.http.fast_writes)
        self.timeout = runtime.settings.http.timeout

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if self.enabled and (method == "PUT" or method == "POST"):
            path = environ.get("PATH_INFO") or ""
            if path.startswith("/v2/"):
                answer = self._answer(environ, start_response, method, path)
                if answer is not None:
                    return answer
        return self.app(environ, start_response)

    def _answer(self, environ: dict[str, Any], start_response: Any, method: str,
                path: str) -> Iterable[bytes] | None:
        for key in _UNUSUAL:
            if environ.get(key):
                return None
        if "//" in path:
            return None  # a doubled slash: Flask's URL map has its own answer
        length = environ.get("CONTENT_LENGTH") or ""
        query = environ.get("QUERY_STRING") or ""
        rest = path[4:]
        source: str | None = None
        upload = ""
        if method == "PUT":
            # registry_api's dispatch: the manifest pattern first, then the upload's.
            name, _, ref = rest.rpartition(_MANIFESTS)
            if name and ref and "/" not in ref:
                kind = "manifest"
                if (not ref.isascii() or query or not length.isdigit()
                        or int(length) > self.registry.options.max_manifest_size):
                    return None
            else:
                kind = "close"
                name, _, upload = rest.rpartition(_UPLOADS)
                if (not name or not upload or not _PLAIN.issuperset(upload) or "/" in upload
                        or length not in ("", "0") or environ.get("HTTP_CONTENT_RANGE")):
                    return None
                digest = _digest_query(query)
                if digest is None:
                    return None
                ref = digest
        else:
            if not rest.endswith(_UPLOADS) or length not in ("", "0"):
                return None
            name = rest[:-len(_UPLOADS)]
            kind, ref = "open", ""
            if query:
                mount = _mount_query(query)
                if mount is None:
                    return None  # a digest (a monolithic push), an algorithm: Flask's
                kind, (ref, source) = "mount", mount
        try:
            validate_name(name)
            if source is not None:
                validate_name(source)
        except Exception:  # noqa: BLE001 (Flask answers the error)
            return None
        if self.mirror is not None and mirrored_prefix(self.mirror, name) is not None:
            return None
        auth = self._service()
        if auth is None:
            return None
        who = ANONYMOUS
        owner: str | None = None  # web/auth.upload_owner(): no owner checks without auth
        if auth.enabled:
            found = _principal(auth, environ.get("HTTP_AUTHORIZATION"))
            if found is None or not auth.can(found, name, PUSH):
                return None  # a challenge, a refusal or a first login: Flask's
            if kind == "mount" and (source is None or not auth.can(found, source, PULL)):
                return None  # no mount (web/auth.may_mount_from): Flask opens an upload
            who, owner = found, found.user or ""
        started = time.perf_counter()
        request_id = new_request_id(environ.get("HTTP_X_REQUEST_ID"))
        client = environ.get("REMOTE_ADDR")
        actor = Actor("anonymous", None, client, request_id)
        if auth.enabled:
            actor = actor.as_user(who.user, robot=False)
        set_actor(actor)
        finish = [self.log_access, started, UPLOAD_ROUTE, method, 201, 0, 0, client or "-",
                  path, who.user or "-", request_id]
        try:
            if kind == "manifest":
                return self._manifest(environ, start_response, name, ref, int(length), finish)
            if kind == "mount":
                return self._mount(environ, start_response, name, ref, source, finish)
            if kind == "open":
                return self._open(environ, start_response, name, owner, finish)
            size = 0 if environ.get("CONTENT_LENGTH") == "0" else None  # request.content_length
            return self._close(environ, start_response, name, upload, ref, size, owner, finish)
        finally:
            set_actor(SYSTEM)  # as Flask's teardown: gthread reuses the thread

    def _mount(self, environ: dict[str, Any], start_response: Any, name: str, digest: str,
               source: str | None, finish: list[Any]) -> Iterable[bytes] | None:
        """registry_api.start_upload's mount and its 201 (registry_api._blob_created)."""
        try:
            size = self.registry.uploads.mount(name, digest, source)
        except Exception as exc:  # noqa: BLE001 (answered as Flask's handlers do)
            return self._failed(environ, start_response, exc, finish)
        if size is None:
            return None  # rolled back, nothing written: Flask opens an upload instead
        return _blob_created(start_response, name, digest, finish)

    def _open(self, environ: dict[str, Any], start_response: Any, name: str,
              owner: str | None, finish: list[Any]) -> Iterable[bytes]:
        """registry_api.start_upload's session (no mount, no digest, sha256) and its 202
        (registry_api._upload_response)."""
        finish[4] = 202
        try:
            state = self.registry.uploads.start(name, "sha256", owner=owner)
        except Exception as exc:  # noqa: BLE001 (answered as Flask's handlers do)
            return self._failed(environ, start_response, exc, finish)
        start_response("202 ACCEPTED", [
            _HTML, ("Location", _upload_location(name, state.id)),
            ("Range", f"0-{max(state.offset - 1, 0)}"), ("Docker-Upload-UUID", state.id),
            ("Content-Length", "0"), ("X-Request-ID", finish[-1]),
            ("Docker-Distribution-API-Version", "registry/2.0"),
        ])
        return _Answer((), tuple(finish))

    def _close(self, environ: dict[str, Any], start_response: Any, name: str, upload: str,
               digest: str, length: int | None, owner: str | None,
               finish: list[Any]) -> Iterable[bytes]:
        """registry_api.put_upload without a body or Content-Range, and its 201."""
        uploads = self.registry.uploads
        try:
            try:
                uploads.precheck(name, length, digest)
                with _receiving_body():
                    digest, _ = uploads.finish(name, upload, digest, (), None, owner=owner)
            except RangeInvalid as exc:
                state = uploads.status(name, upload, owner=owner)
                exc.headers.update({"Location": _upload_location(name, upload),
                                    "Range": f"0-{max(state.offset - 1, 0)}"})
                raise
        except Exception as exc:  # noqa: BLE001 (answered as Flask's handlers do)
            return self._failed(environ, start_response, exc, finish)
        return _blob_created(start_response, name, digest, finish)

    def _manifest(self, environ: dict[str, Any], start_response: Any, name: str, ref: str,
                  length: int, finish: list[Any]) -> Iterable[bytes]:
        """registry_api.put_manifest and its 201, with what its errors answer."""
        finish[2] = MANIFEST_ROUTE
        payload = bytearray()
        try:
            try:
                # The stream Flask's request.stream is (gunicorn's own, or limited to
                # the Content-Length); body_chunks reads gunicorn's socket directly.
                stream = get_input_stream(environ)
                for chunk in body_chunks(environ, stream, self.timeout):
                    payload += chunk
            except ClientDisconnected:
                raise ManifestInvalid("request body ended early",
                                      {"expected": length, "received": len(payload)}) from None
            except MalformedBody as exc:
                raise ManifestInvalid(exc.description) from exc
            finally:
                finish[5] = len(payload)
            pushed = self.registry.put_manifest(name, ref, bytes(payload),
                                                environ.get("CONTENT_TYPE"), [])
        except Exception as exc:  # noqa: BLE001 (answered as Flask's handlers do)
            return self._failed(environ, start_response, exc, finish)
        headers = [_HTML, ("Location", f"/v2/{name}/manifests/{pushed.digest}"),
                   ("Docker-Content-Digest", pushed.digest)]
        if pushed.subject:
            headers.append(("OCI-Subject", pushed.subject))
        headers += [("X-Request-ID", finish[-1]),
                    ("Docker-Distribution-API-Version", "registry/2.0"), ("Content-Length", "0")]
        start_response("201 CREATED", headers)
        return _Answer((), tuple(finish))

    def _failed(self, environ: dict[str, Any], start_response: Any, exc: Exception,
                finish: list[Any]) -> Iterable[bytes]:
        """web/errors.py's answer to ``exc`` and observability's headers, as Flask's."""
        if isinstance(exc, RegistryError):
            response = errors.error_response(exc.code, exc.message, exc.status, exc.detail,
                                             exc.headers)
        else:
            # Body framing errors arrive mapped (web/body.py): an outage or a 500.
            response = errors.unavailable_response(exc)
            if response is None:
                errors.log.exception("unhandled error", exc_info=exc)
                response = errors.error_response("UNKNOWN", "internal server error", 500)
        response.headers["X-Request-ID"] = finish[-1]
        response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
        finish[4], finish[6] = response.status_code, response.content_length or 0
        body = response(environ, start_response)
        return _Answer(body, tuple(finish))


def _blob_created(start_response: Any, name: str, digest: str,
                  finish: list[Any]) -> Iterable[bytes]:
    """registry_api._blob_created's 201 and observability's headers, in Flask's order."""
    start_response("201 CREATED", [
        _HTML, ("Location", f"/v2/{name}/blobs/{digest}"),
        ("Docker-Content-Digest", digest), ("Content-Length", "0"),
        ("X-Request-ID", finish[-1]), ("Docker-Distribution-API-Version", "registry/2.0"),
    ])
    return _Answer((), tuple(finish))


def _digest_query(query: str) -> str | None:
    """The digest of ``digest=<digest>``, alone, plain or percent-encoded (Go clients
    send ``sha256%3A...``); None for anything else ("+", other or repeated parameters,
    a value that decodes to anything but a digest's characters: Flask's)."""
    if "+" in query:
        return None
    key, _, value = query.partition("=")
    if key != "digest" or "&" in value:
        return None
    if "%" in value:
        value = unquote(value)  # bad UTF-8: U+FFFD, refused below as Flask's
    if not value or not _PLAIN.issuperset(value):
        return None
    return value


def _mount_query(query: str) -> tuple[str, str] | None:
    """(digest, source) of ``mount=<digest>&from=<name>`` (in either order, each once,
    percent-encoded or not, as docker sends them); None for anything else."""
    if not query or "+" in query:
        return None
    values: dict[str, str] = {}
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if not sep or key in values or key not in ("mount", "from"):
            return None
        values[key] = unquote(value) if "%" in value else value  # bad UTF-8: U+FFFD
    digest, source = values.get("mount"), values.get("from")
    if not digest or not source or not _PLAIN.issuperset(digest) \
            or not _PLAIN.issuperset(source):
        return None
    return digest, source
