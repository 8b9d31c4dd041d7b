"""Request ids, access log, metrics and health endpoints."""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import time
from typing import Any

from flask import Flask, Response, g, request

from ociregistry import metrics
from ociregistry.core.actor import SYSTEM, Actor, set_actor
from ociregistry.readiness import ReadinessProbe
from ociregistry.runtime import Runtime

ACCESS_LOGGER = "ociregistry.access"
access_log = logging.getLogger(ACCESS_LOGGER)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _route_label(state: object, rule: object) -> str:
    route = getattr(state, "route", None)
    if route:
        return route
    return rule.rule if rule is not None else "unmatched"  # type: ignore[attr-defined]


# Metric children by label values, resolved once per process: ``labels()`` takes a
# lock and validates its arguments on every call. Routes are templates, so few keys.
_counted: dict[tuple[str, str, int], Any] = {}
_timed: dict[tuple[str, str], Any] = {}


def _count(route: str, method: str, status: int) -> Any:
    child = _counted.get((route, method, status))
    if child is None:
        child = _counted[(route, method, status)] = metrics.HTTP_REQUESTS.labels(
            route, method, str(status))
    return child


def _timer(route: str, method: str) -> Any:
    child = _timed.get((route, method))
    if child is None:
        child = _timed[(route, method)] = metrics.HTTP_LATENCY.labels(route, method)
    return child


def _close_with(response: Response, done: Any) -> None:
    """Run ``done`` when the server closes a passed-through body (a blob's file wrapper).

    werkzeug hands a ``direct_passthrough`` body (send_file's, so the server can use
    sendfile) to the server as it is, without the iterator that runs the response's
    close callbacks: the access log and metrics would never see a blob GET. The
    server calls the body's own ``close`` when it is done (PEP 3333), so that is where
    ``done`` goes.
    """
    body = response.response
    own_close = getattr(body, "close", None)

    def close() -> None:
        try:
            if own_close is not None:
                own_close()
        finally:
            done()

    try:
        body.close = close  # type: ignore[union-attr]
    except AttributeError:  # a body that takes no attribute: give up passthrough instead
        response.direct_passthrough = False
        response.call_on_close(done)


def new_request_id(given: str | None) -> str:
    """The caller's X-Request-ID when it is a sane one, else 16 random bytes in hex."""
    return given if given and _REQUEST_ID_RE.match(given) else os.urandom(16).hex()


def request_done(log_access: bool, started: float, route: str, method: str, status: int,
                 received: int, sent: int, client: str, path: str, user: str,
                 request_id: str) -> None:
    """A request's metrics and access-log line, once its body has been sent (the Flask
    hooks and the fast manifest route, web/fast_reads.py, both end here)."""
    duration = time.perf_counter() - started
    _count(route, method, status).inc()
    _timer(route, method).observe(duration)
    if received:
        metrics.BYTES_RECEIVED.inc(received)
    if sent and method != "HEAD":
        metrics.BYTES_SENT.inc(sent)
    if log_access and access_log.isEnabledFor(logging.INFO):
        # The line is built here, once; the record skips logging's stack walk
        # (findCaller): no format of ours prints a file or line number.
        line = (f'{client} {method} {path} {status} {received} {sent} '
                f'{duration:.4f} "{user}" {request_id}')
        access_log.handle(access_log.makeRecord(
            ACCESS_LOGGER, logging.INFO, "", 0, line, None, None,
            extra={"fields": {
                "client": client, "method": method, "path": path, "status": status,
                "bytes_in": received, "bytes_out": sent,
                "duration_ms": round(duration * 1000, 3), "user": user,
                "request_id": request_id, "route": route,
            }},
        ))


def register_observability(app: Flask, runtime: Runtime) -> None:
    settings = runtime.settings
    log_access = settings.log.access_log
    # Per request, the hooks read the WSGI environ and Flask's objects directly
    # (one proxy lookup each), not through the request/g proxies attribute by attribute.
    current_request = request._get_current_object  # type: ignore[attr-defined]
    current_g = g._get_current_object  # type: ignore[attr-defined]
    urandom = os.urandom
    perf_counter = time.perf_counter

    def _start() -> None:
        state = current_g()
        environ = current_request().environ
        state.started = perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID")
        state.request_id = request_id = (
            given if given and _REQUEST_ID_RE.match(given) else urandom(16).hex())
        # Anonymous until authentication says otherwise (web/auth.py).
        state.actor_token = set_actor(
            Actor("anonymous", None, environ.get("REMOTE_ADDR"), request_id))

    # First of all hooks: authentication (web/auth.py, registered earlier) then names
    # the caller on this actor; run after it, this would make every caller anonymous.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)

    @app.teardown_request
    def _forget_actor(_exc: BaseException | None) -> None:
        # gthread reuses threads: the next request must not inherit this actor.
        token = g.pop("actor_token", None)
        if token is not None:
            set_actor(SYSTEM)

    @app.after_request
    def _finish(response: Response) -> Response:
        state = current_g()
        req = current_request()
        headers = response.headers
        request_id = getattr(state, "request_id", None)
        headers["X-Request-ID"] = request_id or ""
        headers["Docker-Distribution-API-Version"] = "registry/2.0"
        # Logged and measured when the body has been sent, not when it starts.
        route, method, status = _route_label(state, req.url_rule), req.method, \
            response.status_code
        started = getattr(state, "started", None) or perf_counter()
        received = getattr(state, "bytes_in", None)
        if received is None:
            received = req.content_length or 0
        sent = response.content_length or 0
        user = getattr(state, "user_name", None) or "-"
        environ = req.environ
        client = environ.get("REMOTE_ADDR") or "-"
        request_id = request_id or "-"
        path = req.path

        def _done() -> None:
            request_done(log_access, started, route, method, status, received, sent,
                         client, path, user, request_id)

        if response.direct_passthrough and method != "HEAD" and 200 <= status \
                and status not in (204, 304):
            _close_with(response, _done)
        else:
            response.call_on_close(_done)
        return response

    @app.get("/healthz")
    def _healthz() -> Response:
        return Response('{"status":"ok"}', mimetype="application/json")

    probe = ReadinessProbe(runtime.metadata, runtime.storage,
                           ttl=settings.http.readiness_cache_seconds)

    @app.get("/readyz")
    def _readyz() -> Response:
        reason = probe.problem()
        if reason:
            return Response(
                json.dumps({"status": "unavailable", "reason": reason}),
                status=503,
                mimetype="application/json",
            )
        return Response('{"status":"ready"}', mimetype="application/json")

    if settings.metrics.enabled:

        @app.get("/metrics")
        def _metrics() -> Response:
            if not metrics_authorized(runtime, request.authorization):
                return Response(
                    "authentication required\n",
                    status=401,
                    headers={"WWW-Authenticate": 'Basic realm="metrics"'},
                )
            body, content_type = metrics.exposition(runtime.metadata)
            return Response(body, content_type=content_type)


def metrics_authorized(runtime: Runtime, auth: object) -> bool:
    cfg = runtime.settings.metrics
    if not (cfg.username and cfg.password):
        return True
    username = getattr(auth, "username", None) or ""
    password = getattr(auth, "password", None) or ""
    ok_user = hmac.compare_digest(username.encode(), cfg.username.encode())
    ok_pass = hmac.compare_digest(password.encode(), cfg.password.encode())
    return ok_user and ok_pass


def readiness_problem(runtime: Runtime) -> str | None:
    """Why the registry can't serve right now, or None (probed now, not cached)."""
    return ReadinessProbe(runtime.metadata, runtime.storage, ttl=0).problem()
