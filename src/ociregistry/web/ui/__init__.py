"""The web management UI, served at /ui/ by the registry's own Flask app.

Server-rendered Jinja2 pages with a little plain JavaScript; reading works
without JavaScript. Pages call the core's browse services (core/browse.py),
never SQL or files; permissions go through access.py.
"""

from __future__ import annotations

from flask import Flask

from ociregistry.auth.sessions import UISessions
from ociregistry.core.browse import BrowseService
from ociregistry.core.gc_jobs import GCJobs, ui_secret_key
from ociregistry.runtime import Runtime
from ociregistry.web.ui import actions, pages, robots  # noqa: F401  (they add the routes)
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
    app.extensions[SERVICES] = UIServices(
        BrowseService(runtime.registry, runtime.storage),
        GCJobs(runtime.gc, runtime.registry),
    )
    app.register_blueprint(bp)
