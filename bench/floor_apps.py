"""The layers bench/floors.py measures, as WSGI apps a server imports by name.

    raw          a bare WSGI callable: what the server alone costs per request
    flask_bare   Flask with the same two routes and no hooks: Flask/werkzeug dispatch
    full()       this registry's app (factory), every hook on, from FLOORS_DATA_DIR

The first two answer ``GET /v2/`` and ``HEAD /v2/<name>/manifests/<ref>`` with
the same headers the registry sends (no lookup), so the columns differ only by
the layer added.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DIGEST = "sha256:" + "0" * 64
_MANIFEST_HEADERS = [("Content-Type", MANIFEST_TYPE), ("Content-Length", "527"),
                     ("Docker-Content-Digest", DIGEST),
                     ("Docker-Distribution-API-Version", "registry/2.0")]
_BASE_HEADERS = [("Content-Type", "application/json"), ("Content-Length", "2"),
                 ("Docker-Distribution-API-Version", "registry/2.0")]


def raw(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/v2/":
        start_response("200 OK", list(_BASE_HEADERS))
        return [b"{}"]
    if path.startswith("/v2/") and "/manifests/" in path:
        start_response("200 OK", list(_MANIFEST_HEADERS))
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b" " * 527]
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


flask_bare = Flask("floors")


@flask_bare.get("/v2/")
def _base() -> Response:
    response = Response("{}", mimetype="application/json")
    response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
    return response


@flask_bare.route("/v2/<path:name>/manifests/<ref>", methods=["GET", "HEAD"])
def _manifest(name: str, ref: str) -> Response:
    response = Response(b" " * 527, content_type=MANIFEST_TYPE)
    response.headers["Docker-Content-Digest"] = DIGEST
    response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
    return response


def full() -> Any:
    """The registry's WSGI app on FLOORS_DATA_DIR (defaults otherwise), as `serve` builds it."""
    from ociregistry.config import load_settings
    from ociregistry.server import _app_factory

    settings = load_settings(None, {"data_dir": os.environ["FLOORS_DATA_DIR"]})
    return _app_factory(settings)
