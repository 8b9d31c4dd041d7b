"""/api/v1/openapi.json and the browsable docs at /api/v1/docs (Swagger UI, served here).

The Swagger UI files come from the pinned ``flask-openapi3-swagger`` package
(Swagger UI 5, which reads OpenAPI 3.1); only its static files are used. Nothing
is loaded from the internet, and the page runs under a strict CSP (no inline
script: the start-up code is a file of its own).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flask import Response, send_from_directory

from ociregistry.web.api.blueprint import bp, operation
from ociregistry.web.api.openapi import document
from ociregistry.web.api.problems import Problem

# Rules on the blueprint that are not API operations (HTML and its assets).
DOC_ENDPOINTS = frozenset({"api_v1.docs", "api_v1.docs_asset", "api_v1.docs_init"})
ASSETS = {
    "swagger-ui.css": "css/swagger-ui.css",
    "swagger-ui-bundle.js": "js/swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js": "js/swagger-ui-standalone-preset.js",
}
CSP = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:", "connect-src 'self'", "object-src 'none'", "base-uri 'none'",
    "frame-ancestors 'none'",
])
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Registry management API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/swagger-ui-standalone-preset.js"></script>
<script src="docs/init.js"></script>
</body></html>
"""
_INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
};
"""


def _asset_root() -> Path | None:
    spec = importlib.util.find_spec("flask_openapi3_swagger")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "templates" / "swagger"


@operation("/openapi.json", "GET", summary="This API's OpenAPI 3.1 document", tag="meta",
           permission="public", response={"type": "object"})
def openapi_document() -> dict:
    return document()


def _secured(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/docs", endpoint="docs")
def docs_page() -> Response:
    # Relative asset URLs: the page is /api/v1/docs, so they resolve under /api/v1/.
    return _secured(Response(_PAGE, mimetype="text/html"))


@bp.get("/docs/init.js", endpoint="docs_init")
def docs_init() -> Response:
    return _secured(Response(_INIT, mimetype="text/javascript"))


@bp.get("/docs/assets/<filename>", endpoint="docs_asset")
def docs_asset(filename: str) -> Response:
    root = _asset_root()
    if filename not in ASSETS:
        raise Problem("not_found", "no such asset")
    if root is None:
        raise Problem("unavailable", "the Swagger UI package (flask-openapi3-swagger) "
                                     "is not installed")
    response = send_from_directory(root, ASSETS[filename], max_age=86400)
    return _secured(response)
