"""Flask application factory."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, redirect

from ociregistry.config import Settings
from ociregistry.runtime import Runtime, build_runtime
from ociregistry.web.api import register_api
from ociregistry.web.auth import init_app as init_auth
from ociregistry.web.errors import error_response, register_error_handlers
from ociregistry.web.fast_reads import EXTENSION as FAST_READS
from ociregistry.web.fast_reads import FastReads
from ociregistry.web.fast_writes import EXTENSION as FAST_WRITES
from ociregistry.web.fast_writes import FastWrites
from ociregistry.web.observability import register_observability
from ociregistry.web.registry_api import bp as registry_bp
from ociregistry.web.sessions import CookieSessions
from ociregistry.web.ui import register_ui


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    if runtime is None:
        from ociregistry.config import load_settings

        runtime = build_runtime(settings or load_settings())
    app = Flask(__name__)
    app.extensions["ociregistry"] = runtime
    app.session_interface = CookieSessions()
    # Manifest bodies are read with an explicit limit; blobs stream.
    app.config["MAX_CONTENT_LENGTH"] = None
    register_error_handlers(app)
    # Observability first: its before_request sets the anonymous actor (with the request
    # id) that authentication then names; the other way round it undid authentication.
    register_observability(app, runtime)
    # Plain manifest HEAD/GET answered before Flask; wrapped first, so it sits inside
    # the client-address middleware that init_auth puts around everything.
    # Plain mounts and manifest PUTs too (web/fast_writes.py), inside the read route.
    app.wsgi_app = app.extensions[FAST_WRITES] = FastWrites(  # type: ignore[method-assign]
        app.wsgi_app, runtime, app.extensions)
    app.wsgi_app = app.extensions[FAST_READS] = FastReads(  # type: ignore[method-assign]
        app.wsgi_app, runtime, app.extensions)
    init_auth(app, runtime.settings)
    app.wsgi_app = RequireHost(app.wsgi_app)  # type: ignore[method-assign]
    app.register_blueprint(registry_bp)
    if runtime.settings.ui.enabled:
        register_ui(app, runtime)
    if runtime.settings.api.enabled:
        register_api(app, runtime)

    @app.get("/")
    def _root() -> Response:
        return redirect("/ui/" if runtime.settings.ui.enabled else "/v2/")

    return app


class RequireHost:
    """RFC 9112 3.2: an HTTP/1.1 request with no Host, or more than one, is a 400.

    The server's parser accepts both; answered here, before anything reads the
    request (the proxy middleware could otherwise take a host from elsewhere).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("SERVER_PROTOCOL") == "HTTP/1.1":
            host = environ.get("HTTP_HOST")  # several are joined with commas
            if host is None or "," in host:
                response = error_response(
                    "UNSUPPORTED", "an HTTP/1.1 request needs exactly one Host header", 400
                )
                return response(environ, start_response)
        return self.app(environ, start_response)

