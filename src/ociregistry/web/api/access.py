"""Who calls /api/v1 and what they may do: the registry's own rules, nothing new.

Credentials are those of the registry API (web/auth.py): Basic (htpasswd users
and robot accounts), Bearer tokens. Without an Authorization header, the web
UI's session cookie (web/ui/access.py) names the user; such a request must
then carry the session's CSRF token in the ``X-CSRF-Token`` header on every
unsafe method, since a browser sends the cookie whatever page made the request.
Every decision is asked of the AuthService (auth/service.py), as /v2 does.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from flask import current_app, g, request, session

from ociregistry.auth.rules import DELETE, PULL, PUSH
from ociregistry.auth.service import Principal
from ociregistry.web import auth as registry_auth
from ociregistry.web.api.problems import Problem
from ociregistry.web.ui.access import SESSIONS_EXTENSION
from ociregistry.web.ui.access import viewer as ui_viewer
from ociregistry.web.ui.security import CSRF_FIELD, CSRF_HEADER, UNSAFE_METHODS

_ACTIONS = {"repository:pull": PULL, "repository:push": PUSH, "repository:delete": DELETE}


def authenticate() -> None:
    """Who is calling (the blueprint runs this before every operation)."""
    who = registry_auth.authenticate_api()
    if who.user is None and "Authorization" not in request.headers:
        who = _session_principal() or who
    g.principal = who
    g.user_name = who.user  # for the access log


def _session_principal() -> Principal | None:
    """The UI's signed-in user, when this app serves the UI and the cookie names one."""
    if SESSIONS_EXTENSION not in current_app.extensions or not registry_auth.service().enabled:
        return None
    user = ui_viewer().user
    if user is None:
        return None
    if request.method in UNSAFE_METHODS:
        expected = session.get(CSRF_FIELD)
        given = request.headers.get(CSRF_HEADER, "")
        if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
            raise Problem("csrf_failed", f"a request signed in by the UI session must send "
                                         f"the session's CSRF token in {CSRF_HEADER}")
    return Principal(user, "session")


def check(permission: str, repository: str | None) -> None:
    """Raise unless the caller holds ``permission`` (as declared on the operation)."""
    if permission in ("public", "list"):
        return
    if permission == "admin":
        registry_auth.require_admin()
        return
    assert repository is not None, "a repository permission needs a {name} path parameter"
    registry_auth.require(repository, _ACTIONS[permission])


def visible_filter() -> Callable[[str], bool] | None:
    """Repositories the caller may list (None: all), as /v2/_catalog decides."""
    return registry_auth.catalog_filter()


def can(repository: str, action: str) -> bool:
    auth = registry_auth.service()
    return auth.can(registry_auth.principal(), repository, action)
