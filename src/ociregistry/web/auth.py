"""Request authentication and authorization, and the built-in token endpoint.

A ``before_request`` hook works out who is calling (``g.principal``): Basic
credentials checked against the htpasswd file, or a Bearer token checked
against the trusted keys. Wrong credentials answer 401 at once; none at all
make the caller anonymous. The /v2/ handlers then ask for what they need
(``require``, ``catalog_filter``, ``require_admin``, ...); the decisions
themselves live in ``ociregistry.auth``.

With no authentication configured every helper here lets everything through,
as the registry always did (except ``POST /v2/gc``: from the registry host only,
never through a proxy: ``web.proxies.is_local``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request

from ociregistry import metrics
from ociregistry.auth import redact
from ociregistry.auth.bruteforce import FailureLimiter
from ociregistry.auth.ratelimit import SharedRateLimiter, retry_after
from ociregistry.auth.robots import RobotGrant, RobotService
from ociregistry.auth.rules import DELETE, PULL, PUSH, is_robot
from ociregistry.auth.service import (
    ADMIN_RESOURCE,
    ANONYMOUS,
    CATALOG,
    AuthService,
    BadCredentials,
    InvalidToken,
    Principal,
)
from ociregistry.auth.tokens import Scope, parse_scopes
from ociregistry.config import Settings
from ociregistry.core.actor import current_actor, set_actor
from ociregistry.core.errors import Denied, RegistryError, TooManyRequests, Unauthorized
from ociregistry.web.proxies import ClientAddress, is_local

log = logging.getLogger("ociregistry.auth")
bp = Blueprint("auth", __name__)

EXTENSION = "ociregistry.auth"
FAILURES_EXTENSION = EXTENSION + ".failures"  # a FailureLimiter, or None
NO_AUTH = Principal(None, "none")

# What each /v2/<name>/... endpoint needs, by (kind, method).
ACTIONS = {
    ("manifest", "GET"): PULL,
    ("manifest", "HEAD"): PULL,
    ("manifest", "PUT"): PUSH,
    ("manifest", "DELETE"): DELETE,
    ("blob", "GET"): PULL,
    ("blob", "HEAD"): PULL,
    ("blob", "DELETE"): DELETE,
    ("upload", "POST"): PUSH,
    ("upload", "PATCH"): PUSH,
    ("upload", "PUT"): PUSH,
    ("upload", "GET"): PUSH,
    ("upload", "DELETE"): PUSH,
    ("tags", "GET"): PULL,
    ("referrers", "GET"): PULL,
}
# The actions a client is told to ask for (push implies pull, as clients expect).
_CHALLENGE_ACTIONS = {PULL: ("pull",), PUSH: ("pull", "push"), DELETE: ("delete",)}


def init_app(app: Flask, settings: Settings) -> None:
    redact.install()
    runtime = app.extensions["ociregistry"]
    service = AuthService(settings, RobotService(runtime.metadata, settings.auth.robots))
    app.extensions[EXTENSION] = service
    uploads = runtime.registry.uploads
    uploads.session_lifetime = settings.limits.upload_session_lifetime_seconds
    uploads.max_sessions_per_owner = settings.limits.max_uploads_per_user
    # Shared through the index by every worker and instance; None when off,
    # so that the default costs nothing per request.
    limits = settings.rate_limit
    db = app.extensions["ociregistry"].metadata
    app.extensions[EXTENSION + ".limits"] = (
        SharedRateLimiter(db, "addr", limits.per_address, limits.burst)
        if limits.per_address else None,
        SharedRateLimiter(db, "user", limits.per_user, limits.burst)
        if limits.per_user else None,
    )
    failures = FailureLimiter(db, limits.auth_failures, limits.auth_failures_per_user,
                              limits.auth_failure_window_seconds)
    app.extensions[FAILURES_EXTENSION] = failures if failures.enabled else None
    # Outermost, so that it sees the socket peer before anything rewrites it.
    app.wsgi_app = ClientAddress(app.wsgi_app, settings.http.trusted_proxies)  # type: ignore[method-assign]
    app.before_request(_before_request)
    app.register_blueprint(bp)


def service() -> AuthService:
    return current_app.extensions[EXTENSION]


def principal() -> Principal:
    return g.get("principal", NO_AUTH)


# -- challenges ------------------------------------------------------------------
def _realm() -> str:
    configured = service().settings.token.realm
    return configured or request.host_url.rstrip("/") + "/auth/token"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def challenge(scopes: list[Scope] | None = None, error: str | None = None) -> str:
    auth = service()
    if auth.mode == "basic":
        return f'Basic realm="{_quote(auth.settings.realm)}", charset="UTF-8"'
    parts = [f'realm="{_quote(_realm())}"', f'service="{_quote(auth.service)}"']
    if scopes:
        parts.append(f'scope="{_quote(" ".join(str(s) for s in scopes))}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)


def _unauthorized(message: str, scopes: list[Scope] | None = None,
                  error: str | None = None) -> RegistryError:
    detail = [{"Type": s.type, "Name": s.name, "Action": ",".join(s.actions)}
              for s in scopes or []] or None
    return Unauthorized(message, detail, headers={"WWW-Authenticate": challenge(scopes, error)})


def _refuse(who: Principal, scope: Scope, rules_allow: Callable[[], bool]) -> RegistryError:
    """401 (go and get credentials or a better token) or 403 (you may not)."""
    auth = service()
    detail = [{"Type": scope.type, "Name": scope.name, "Action": ",".join(scope.actions)}]
    if not who.authenticated:
        return _unauthorized("authentication required", [scope])
    if who.token is None:
        return Denied("requested access to the resource is denied", detail)
    # A token without the access: ask for a new one, unless our own rules say
    # the user could never get it.
    if auth.builtin_tokens and not rules_allow():
        return Denied("requested access to the resource is denied", detail)
    return _unauthorized("insufficient scope", [scope], "insufficient_scope")


# -- the hook --------------------------------------------------------------------
def _client_key() -> str:
    return request.remote_addr or "unknown"


def _rate_limit(limiter: SharedRateLimiter | None, key: str) -> None:
    if limiter is None:
        return
    wait = limiter.check(key)
    if wait:
        metrics.RATE_LIMITED.labels("per_address" if limiter.name == "addr" else "per_user").inc()
        raise TooManyRequests(
            "too many requests", {"retry_after_seconds": float(retry_after(wait))},
            headers={"Retry-After": retry_after(wait)},
        )


def _credentials() -> tuple[str, str] | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return scheme.lower(), value.strip()


def _basic_pair(value: str) -> tuple[str, str] | None:
    """(user, password) from Basic credentials; None for the empty pair ``:``.

    Some clients (containers/image) send ``Basic Og==`` when they have no
    credentials: that is an anonymous caller, not a failed login.
    """
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise BadCredentials("malformed Basic credentials") from exc
    user, sep, password = decoded.partition(":")
    if sep and not user and not password:
        return None
    if not sep or not user:
        raise BadCredentials("malformed Basic credentials")
    return user, password


def check_basic(auth: AuthService, user: str, password: str) -> Principal:
    """``auth.basic`` under the failed-attempt limits (auth/bruteforce.py).

    Credentials this process checked right a moment ago skip the limits (no
    bcrypt runs, it is no guess), so a push with Basic credentials adds
    nothing to the index per request.
    """
    limiter: FailureLimiter | None = current_app.extensions.get(FAILURES_EXTENSION)
    htpasswd = auth.htpasswd
    if limiter is None or is_robot(user) or (
        htpasswd is not None and htpasswd.is_verified(user, password)
    ):
        # A robot's token is a 256-bit random secret checked with one SHA-256: there
        # is nothing to guess and no bcrypt to spend, so no attempt is reserved.
        return auth.basic(user, password)
    attempt = limiter.attempt(request.remote_addr, user)
    who = auth.basic(user, password)
    attempt.succeeded()
    return who


def _authenticate(auth: AuthService, any_basic: bool = False) -> Principal:
    credentials = _credentials()
    if credentials is None:
        return ANONYMOUS
    scheme, value = credentials
    if scheme == "basic" and (auth.mode == "basic" or any_basic or _robot_basic(value)):
        try:
            pair = _basic_pair(value)
            return ANONYMOUS if pair is None else check_basic(auth, *pair)
        except BadCredentials as exc:
            metrics.AUTH_FAILURES.labels("bad_credentials").inc()
            raise _unauthorized("invalid user name or password") from exc
    if auth.mode == "token" and scheme == "bearer":
        try:
            return auth.bearer(value)
        except InvalidToken as exc:
            metrics.AUTH_FAILURES.labels("invalid_token").inc()
            raise _unauthorized(str(exc), error="invalid_token") from exc
    metrics.AUTH_FAILURES.labels("unsupported_scheme").inc()
    raise _unauthorized("unsupported authorization scheme")


def _robot_basic(value: str) -> bool:
    """Basic credentials of a robot: accepted on /v2/ in token mode too (scripts, curl)."""
    try:
        pair = _basic_pair(value)
    except BadCredentials:
        return False
    return pair is not None and is_robot(pair[0])


def _before_request() -> None:
    path = request.path
    by_address, by_user = current_app.extensions[EXTENSION + ".limits"]
    if path.startswith("/ui/"):
        _rate_limit(by_address, _client_key())  # the UI is limited like the API
        return
    if not (path.startswith("/v2") or path.startswith("/auth/")):
        return
    _rate_limit(by_address, _client_key())
    auth = service()
    if not auth.enabled or path.startswith("/auth/"):
        return  # the token endpoint checks its own credentials
    who = _authenticate(auth)
    g.principal = who
    g.user_name = who.user  # for the access log
    _set_actor(who)
    if who.user is not None:
        _rate_limit(by_user, who.user)
    if path in ("/v2", "/v2/"):
        # The base endpoint tells clients how to authenticate: a caller
        # without credentials (or token) is always challenged.
        if who is ANONYMOUS:
            raise _unauthorized("authentication required")


def authenticate_api() -> Principal:
    """The caller of a /api/v1 request, under the same limits as /v2.

    Basic credentials are accepted in token mode too (scripts and the CLI send
    what ``docker login`` stored); no Authorization header: ANONYMOUS.
    """
    by_address, by_user = current_app.extensions[EXTENSION + ".limits"]
    _rate_limit(by_address, _client_key())
    auth = service()
    if not auth.enabled:
        return NO_AUTH
    who = _authenticate(auth, any_basic=True)
    _set_actor(who)
    if who.user is not None:
        _rate_limit(by_user, who.user)
    return who


def _set_actor(who: Principal) -> None:
    """Events, tag history and audit entries name the authenticated caller."""
    set_actor(current_actor().as_user(who.user, robot=who.robot is not None))


# -- what the /v2/ handlers call ---------------------------------------------------
def authorize(kind: str, method: str, name: str) -> None:
    """Raise unless the caller may do ``method`` on ``kind`` in repository ``name``."""
    auth = service()
    if not auth.enabled:
        return
    action = ACTIONS.get((kind, method), PUSH)
    require(name, action)


def require(name: str, action: str) -> None:
    auth = service()
    if not auth.enabled:
        return
    who = principal()
    if auth.can(who, name, action):
        return
    scope = Scope("repository", name, _CHALLENGE_ACTIONS.get(action, (action,)))
    raise _refuse(who, scope, lambda: auth.rules_allow(who, name, action))


def may_mount_from(source: str | None) -> bool:
    """A cross-repository mount needs pull on its source.

    With authentication, a mount without ``from`` (any repository holding the
    blob) is never made: it would let a caller link a blob it can't read. The
    client then uploads the blob as usual.
    """
    auth = service()
    if not auth.enabled:
        return True
    return source is not None and auth.can(principal(), source, PULL)


def upload_owner() -> str | None:
    """Who owns the upload sessions this caller opens (None: no owner checks)."""
    if not service().enabled:
        return None
    return principal().user or ""


def catalog_filter() -> Callable[[str], bool] | None:
    """A predicate over names the caller may see, or None for all of them."""
    auth = service()
    if not auth.enabled:
        return None
    who = principal()
    scope = Scope(*CATALOG, ("*",))
    if who is ANONYMOUS and (auth.mode == "token" or not auth.rules.applies_to_anyone(None)):
        raise _unauthorized("authentication required", [scope])
    if not auth.may_list_catalog(who):
        raise _refuse(who, scope, lambda: True)
    return auth.catalog_filter(who)


def filtered_catalog(registry: Any, allowed: Callable[[str], bool], n: int | None,
                     last: str | None) -> list[str]:
    """Up to ``n`` + 1 names after ``last`` that ``allowed`` accepts (pages of the index)."""
    want = None if n is None else n + 1
    batch = 1000 if want is None else max(want, 100)
    out: list[str] = []
    while want is None or len(out) < want:
        names = registry.catalog(batch, last)
        out.extend(name for name in names if allowed(name))
        if len(names) < batch:
            break
        last = names[-1]
    return out if want is None else out[:want]


def require_admin() -> None:
    """POST /v2/gc and admin endpoints: an admin, or the registry host without auth."""
    auth = service()
    if not auth.enabled:
        if not is_local(request.environ):
            raise Denied("garbage collection may only be started from the registry host "
                         "(directly, not through a proxy)")
        return
    who = principal()
    if auth.is_admin(who):
        return
    scope = Scope(*ADMIN_RESOURCE, ("*",))
    raise _refuse(who, scope, lambda: auth.rules.is_admin(who.user))


# -- the built-in token service ---------------------------------------------------
class _Plain(RegistryError):
    """A token endpoint failure that is not about credentials."""

    code = "UNSUPPORTED"

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status=status)


def _token_response(auth: AuthService, user: str | None, scopes: list[Scope],
                    refresh: str | None, robot: RobotGrant | None = None) -> Response:
    issued = auth.issue(user, scopes, robot)
    body = {
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at,
    }
    if refresh:
        body["refresh_token"] = refresh
    response = Response(json.dumps(body), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _bad_login(message: str = "invalid user name or password") -> RegistryError:
    metrics.AUTH_FAILURES.labels("token_login").inc()
    return Unauthorized(message, headers={
        "WWW-Authenticate": f'Basic realm="{_quote(service().settings.realm)}", charset="UTF-8"'
    })


@bp.route("/auth/token", methods=["GET", "POST"])
def token_endpoint() -> Response:
    auth = service()
    if not auth.builtin_tokens:
        raise _Plain("no token service here", 404)
    if request.method == "GET":
        args = request.args
        wanted = args.get("service")
        if wanted and wanted != auth.service:
            raise _Plain("unknown service")
        scopes = parse_scopes(args.getlist("scope"))
        user, robot = None, None
        credentials = _credentials()
        if credentials is not None:
            scheme, value = credentials
            if scheme != "basic":
                raise _bad_login("unsupported authorization scheme")
            try:
                pair = _basic_pair(value)
                if pair is not None:
                    who = check_basic(auth, *pair)
                    user, robot = who.user, who.robot
            except BadCredentials as exc:
                raise _bad_login() from exc
            account = args.get("account")
            if account and account != user:
                raise _Plain("account does not match the credentials")
        offline = args.get("offline_token", "").lower() == "true"
        refresh = auth.issue_refresh(user) if offline and user and not robot else None
        return _token_response(auth, user, scopes, refresh, robot)
    # The OAuth2 form (docker uses it with a refresh token once logged in).
    form = request.form
    wanted = form.get("service")
    if wanted and wanted != auth.service:
        raise _Plain("unknown service")
    if not form.get("client_id"):
        raise _Plain("client_id is required")
    scopes = parse_scopes([form.get("scope", "")])
    grant = form.get("grant_type")
    robot = None
    if grant == "password":
        try:
            who = check_basic(auth, form.get("username", ""), form.get("password", ""))
        except BadCredentials as exc:
            raise _bad_login() from exc
        user, robot = who.user, who.robot
        assert user is not None
        # No refresh token for a robot: it logs in with its token each time.
        offline = form.get("access_type") == "offline" and robot is None
        refresh = auth.issue_refresh(user) if offline else None
    elif grant == "refresh_token":
        try:
            user = auth.refresh(form.get("refresh_token", "")).user
        except BadCredentials as exc:
            raise _bad_login("invalid refresh token") from exc
        refresh = form.get("refresh_token")
    else:
        raise _Plain("unsupported grant_type")
    return _token_response(auth, user, scopes, refresh, robot)


@bp.route("/auth/jwks.json", methods=["GET"])
def jwks() -> Response:
    """The built-in service's public key, for other registries that trust it."""
    auth = service()
    if not auth.builtin_tokens:
        raise _Plain("no token service here", 404)
    assert auth.issuer is not None
    return Response(json.dumps(auth.issuer.jwks()), mimetype="application/json")
