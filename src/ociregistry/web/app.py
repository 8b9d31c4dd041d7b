"""Flask application factory."""

from __future__ import annotations

from flask import Flask, Response, redirect

from ociregistry.config import Settings
from ociregistry.runtime import Runtime, build_runtime
from ociregistry.web.auth import init_app as init_auth
from ociregistry.web.errors import register_error_handlers
from ociregistry.web.observability import register_observability
from ociregistry.web.registry_api import bp as registry_bp
from ociregistry.web.ui import register_ui


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    if runtime is None:
        from ociregistry.config import load_settings

        runtime = build_runtime(settings or load_settings())
    app = Flask(__name__)
    app.extensions["ociregistry"] = runtime
    # Manifest bodies are read with an explicit limit; blobs stream.
    app.config["MAX_CONTENT_LENGTH"] = None
    register_error_handlers(app)
    init_auth(app, runtime.settings)
    register_observability(app, runtime)
    app.register_blueprint(registry_bp)
    if runtime.settings.ui.enabled:
        register_ui(app, runtime)

    @app.after_request
    def _api_version(response: Response) -> Response:
        response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
        return response

    @app.get("/")
    def _root() -> Response:
        return redirect("/ui/" if runtime.settings.ui.enabled else "/v2/")

    return app
