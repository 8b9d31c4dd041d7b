"""Flask application factory."""

from __future__ import annotations

from flask import Flask, Response, redirect

from ociregistry.config import Settings
from ociregistry.runtime import Runtime, build_runtime
from ociregistry.web.errors import register_error_handlers
from ociregistry.web.registry_api import bp as registry_bp


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    if runtime is None:
        from ociregistry.config import load_settings

        runtime = build_runtime(settings or load_settings())
    app = Flask(__name__)
    app.extensions["ociregistry"] = runtime
    # Manifest bodies are read with an explicit limit; blobs stream.
    app.config["MAX_CONTENT_LENGTH"] = None
    register_error_handlers(app)
    app.register_blueprint(registry_bp)

    @app.after_request
    def _api_version(response: Response) -> Response:
        response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
        return response

    @app.get("/")
    def _root() -> Response:
        return redirect("/v2/")

    @app.get("/healthz")
    def _healthz() -> Response:
        return Response('{"status":"ok"}', mimetype="application/json")

    return app
