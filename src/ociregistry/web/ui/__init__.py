"""The web management UI, served at /ui/ by the registry's own Flask app.

Server-rendered Jinja2 pages with a little plain JavaScript; reading works
without JavaScript. Pages call the core's services: the listings /api/v1 serves
(core/catalog.py, keyset pages) and core/browse.py (a manifest, the overview,
deletes), never SQL or files; permissions go through access.py.
"""

from __future__ import annotations

from flask import Flask

from ociregistry.auth.sessions import UISessions
from ociregistry.core.browse import BrowseService
from ociregistry.core.catalog import CatalogService
from ociregistry.core.cursors import CursorCodec
from ociregistry.core.gc_jobs import GCJobs, ui_secret_key
from ociregistry.runtime import Runtime
from ociregistry.web.ui import (  # noqa: F401  (they add the routes)
    actions,
    events,
    imports,
    mirror,
    pages,
    quotas,
    retention,
    robots,
    tag_lifecycle,
)
from ociregistry.web.ui.access import SESSIONS_EXTENSION
from ociregistry.web.ui.blueprint import SERVICES, UIServices, bp
from ociregistry.web.ui.security import configure_sessions


def register_ui(app: Flask, runtime: Runtime) -> None:
    """Mount the UI on ``app`` at /ui/."""
    # Without ui.secret_key, a key generated once and kept in the index: the
    # instances behind a load balancer share it.
    configured = runtime.settings.ui.secret_key
    key = configured.encode() if configured else ui_secret_key(runtime.metadata)
    configure_sessions(app, key)
    app.extensions[SESSIONS_EXTENSION] = UISessions(
        runtime.metadata, runtime.settings.ui.session_lifetime_seconds)
    browse = BrowseService(runtime.registry, runtime.storage)
    app.extensions[SERVICES] = UIServices(
        browse, GCJobs(runtime.gc, runtime.registry),
        # Cursors signed with the same key as /api/v1's: one listing, one cursor.
        CatalogService(browse, CursorCodec(key)),
    )
    app.register_blueprint(bp)
