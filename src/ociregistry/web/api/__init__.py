"""The management API at /api/v1: JSON, described by one OpenAPI 3.1 document.

One module per resource; each declares its operations with
``blueprint.operation`` (route, parameters, schema and permission in one
place). Views call core services only (core/catalog.py, core/browse.py), the
same the web UI uses; errors are RFC 9457 problems (problems.py).
"""

from __future__ import annotations

from flask import Flask

from ociregistry.runtime import Runtime
from ociregistry.web.api import (  # noqa: F401  (they add hooks and routes)
    access,
    admin,
    docs,
    events,
    imports,
    manifests,
    mirror,
    quotas,
    repositories,
    retention,
    search,
    tag_lifecycle,
    tags,
)
from ociregistry.web.api.blueprint import bp

SERVICES = "ociregistry.api"


def register_api(app: Flask, runtime: Runtime) -> None:
    """Mount the management API on ``app`` at /api/v1."""
    from ociregistry.web.api.services import build_services

    app.extensions[SERVICES] = build_services(runtime)
    app.register_blueprint(bp)
