"""Every permission decision of the web UI goes through this module.

The UI asks four questions: who is the viewer, may they see a repository,
may they delete in it, are they an admin (overview figures, garbage
collection). The answers come from a ``Policy``: the registry's own users and
access rules when authentication is configured, and none at all when it is
not, in which case everyone (anonymous included) may do everything, as on the
API.

The one place that connects the policy to the registry's authentication
(``app.extensions["ociregistry.auth"]``, an ``AuthService``) is
``registry_policy`` below. Tests (and embedders) may instead put a policy in
``app.extensions[POLICY_EXTENSION]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flask import Flask, current_app, g, request, session

from ociregistry.auth.bruteforce import FailureLimiter
from ociregistry.auth.service import AuthService
from ociregistry.auth.sessions import UISessions
from ociregistry.core.actor import current_actor, set_actor
from ociregistry.web.auth import EXTENSION as AUTH_EXTENSION
from ociregistry.web.auth import FAILURES_EXTENSION
from ociregistry.web.proxies import is_local

PULL, DELETE = "pull", "delete"
POLICY_EXTENSION = "ociregistry.ui.policy"  # set by tests or embedders to override
POLICY_CACHE = "ociregistry.ui.rules_policy"
SESSIONS_EXTENSION = "ociregistry.ui.sessions"  # a UISessions (sessions kept in the index)
SESSION_LIFETIME = 12 * 3600  # default seconds a sign-in lasts (ui.session_lifetime_seconds)
SESSION_ID = "sid"  # the cookie's one field that signs anyone in


class Policy(Protocol):
    """What the UI needs from the registry's authentication and access rules."""

    def verify_password(self, user: str, password: str) -> bool: ...

    def session_stamp(self, user: str) -> str | None:
        """Changes when the user's password does; None when the user is gone."""

    def is_admin(self, user: str | None) -> bool: ...

    def allowed_actions(self, user: str | None, repository: str) -> frozenset[str]: ...

    def pull_filter(self, user: str | None) -> Callable[[str], bool]: ...


@dataclass(frozen=True)
class Viewer:
    user: str | None  # None: anonymous
    auth_enabled: bool

    @property
    def anonymous(self) -> bool:
        return self.user is None


class RulesPolicy:
    """The registry's htpasswd users and access rules (src/ociregistry/auth/) as a Policy.

    A UI session is a user who signed in with their password, so the access
    rules decide for it exactly as they do for Basic credentials on the API.
    """

    def __init__(self, service: AuthService) -> None:
        self.service = service

    def verify_password(self, user: str, password: str) -> bool:
        htpasswd = self.service.htpasswd
        return htpasswd is not None and htpasswd.verify(user, password)

    def session_stamp(self, user: str) -> str | None:
        htpasswd = self.service.htpasswd
        return htpasswd.fingerprint(user) if htpasswd is not None else None

    def is_admin(self, user: str | None) -> bool:
        return self.service.rules.is_admin(user)

    def allowed_actions(self, user: str | None, repository: str) -> frozenset[str]:
        return self.service.rules.allowed_actions(user, repository)

    def pull_filter(self, user: str | None) -> Callable[[str], bool]:
        return self.service.rules.pull_filter(user)


def registry_policy(app: Flask) -> Policy | None:
    """The registry's authentication as a Policy; None when none is configured."""
    service = app.extensions.get(AUTH_EXTENSION)
    if service is None or not service.enabled:
        return None
    cached = app.extensions.get(POLICY_CACHE)
    if cached is None or cached.service is not service:
        cached = app.extensions[POLICY_CACHE] = RulesPolicy(service)
    return cached


def policy() -> Policy | None:
    app = current_app
    if POLICY_EXTENSION in app.extensions:
        return app.extensions[POLICY_EXTENSION]
    return registry_policy(app)


def auth_enabled() -> bool:
    return policy() is not None


# -- who is looking ---------------------------------------------------------------
def _sessions() -> UISessions:
    return current_app.extensions[SESSIONS_EXTENSION]


def viewer() -> Viewer:
    """The signed-in user of this request (checked once per request), or anonymous."""
    cached = g.get("ui_viewer")
    if cached is not None:
        return cached
    active = policy()
    user = None
    if active is not None and session.get(SESSION_ID) is not None:
        # The cookie names a session; the index says whether it still stands.
        user = _sessions().user(session[SESSION_ID], active.session_stamp)
        if user is None:
            session.clear()
    g.ui_viewer = Viewer(user, active is not None)
    if user is not None:  # what the UI changes is done by this user
        set_actor(current_actor().as_user(user))
    return g.ui_viewer


def sign_in(user: str, password: str) -> bool:
    """Check the credentials; on success, start a fresh session for the user.

    Failed checks count against the caller's address and the user name
    (auth/bruteforce.py); over the limit this raises TooManyRequests.
    """
    active = policy()
    if active is None or not user or not password:
        return False
    limiter: FailureLimiter | None = current_app.extensions.get(FAILURES_EXTENSION)
    attempt = limiter.attempt(request.remote_addr, user) if limiter is not None else None
    if not active.verify_password(user, password):
        return False
    if attempt is not None:
        attempt.succeeded()
    session.clear()  # nothing from before the sign-in survives it
    session[SESSION_ID] = _sessions().start(user, active.session_stamp(user) or "")
    g.pop("ui_viewer", None)
    return True


def sign_out() -> None:
    session_id = session.get(SESSION_ID)
    if session_id is not None:
        _sessions().end(session_id)
    session.clear()
    g.pop("ui_viewer", None)


# -- what they may do ---------------------------------------------------------------
def is_admin() -> bool:
    active = policy()
    return active is None or active.is_admin(viewer().user)


def can_pull(repository: str) -> bool:
    active = policy()
    return active is None or PULL in active.allowed_actions(viewer().user, repository)


def can_delete(repository: str) -> bool:
    active = policy()
    return active is None or DELETE in active.allowed_actions(viewer().user, repository)


def can_run_gc() -> bool:
    # Without authentication, as for POST /v2/gc: only from the registry host,
    # never through a proxy (the socket peer decides, not a header).
    if policy() is None:
        return is_local(request.environ)
    return is_admin()


def can_see_storage() -> bool:
    """Registry-wide figures (counts, storage used, GC runs)."""
    return is_admin()


def visible_repositories() -> Callable[[str], bool] | None:
    """A filter for listings: None when the viewer may see every repository."""
    active = policy()
    if active is None:
        return None
    user = viewer().user
    if active.is_admin(user):
        return None
    return active.pull_filter(user)
