"""Request ids, access log, metrics and health endpoints."""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from ociregistry import metrics
from ociregistry.core.actor import SYSTEM, Actor, set_actor
from ociregistry.readiness import ReadinessProbe
from ociregistry.runtime import Runtime

access_log = logging.getLogger("ociregistry.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _route_label() -> str:
    route = g.get("route")
    if route:
        return route
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def register_observability(app: Flask, runtime: Runtime) -> None:
    settings = runtime.settings

    def _start() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex
        # Anonymous until authentication says otherwise (web/auth.py).
        g.actor_token = set_actor(Actor("anonymous", None, request.remote_addr, g.request_id))

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
        response.headers["X-Request-ID"] = g.get("request_id", "")
        # Logged and measured when the body has been sent, not when it starts.
        route, method, status = _route_label(), request.method, response.status_code
        started = g.get("started", time.perf_counter())
        received = g.get("bytes_in", request.content_length or 0)
        sent = response.content_length or 0
        user = g.get("user_name") or "-"
        client = request.remote_addr or "-"
        request_id = g.get("request_id", "-")
        path = request.path

        def _done() -> None:
            duration = time.perf_counter() - started
            metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
            metrics.HTTP_LATENCY.labels(route, method).observe(duration)
            if received:
                metrics.BYTES_RECEIVED.inc(received)
            if sent and method != "HEAD":
                metrics.BYTES_SENT.inc(sent)
            if settings.log.access_log:
                access_log.info(
                    '%s %s %s %s %d %d %.4f "%s" %s',
                    client, method, path, status, received, sent, duration, user, request_id,
                    extra={"fields": {
                        "client": client, "method": method, "path": path, "status": status,
                        "bytes_in": received, "bytes_out": sent,
                        "duration_ms": round(duration * 1000, 3), "user": user,
                        "request_id": request_id, "route": route,
                    }},
                )

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
