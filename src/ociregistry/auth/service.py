"""Authentication and authorization decisions, built from settings. No Flask here.

Three modes (``auth.mode``):

- ``none``: nothing configured; everyone may do everything (the registry as it
  was before authentication existed).
- ``basic``: users in an htpasswd file send Basic credentials with each
  request; the access rules decide.
- ``token``: clients bring a JWT from a token service (the built-in one on
  ``/auth/token``, which applies the access rules, or an external one whose
  keys are configured); the token's ``access`` claim decides.

In both, robot accounts (auth/robots.py) send ``robot$NAME`` and a token as
Basic credentials (to /v2/ directly, or to the built-in token service); their
scope cuts down what the rules give them, and a bearer token issued to a robot
is good only while the robot's token is (checked on every request).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ociregistry.auth.htpasswd import Htpasswd
from ociregistry.auth.robots import RobotGrant, RobotRefused, RobotService
from ociregistry.auth.rules import ADMIN, PULL, REPOSITORY_ACTIONS, AccessRules, is_robot
from ociregistry.auth.tokens import (
    InvalidToken,
    IssuedToken,
    Scope,
    TokenIssuer,
    TokenVerifier,
    VerifiedToken,
    load_certificates,
    load_jwks,
    load_or_create_key,
)
from ociregistry.config import AuthSettings, Settings
from ociregistry.core.names import MAX_NAME_LENGTH, NAME_RE

# Registry-wide resources in token scopes (``registry:<name>:*``).
CATALOG = ("registry", "catalog")
ADMIN_RESOURCE = ("registry", "admin")


class BadCredentials(Exception):
    """Credentials were sent and are wrong (never anonymous access then)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user name (None: anonymous) and how they proved it."""

    user: str | None
    method: str  # "none", "basic", "token", "anonymous", "robot"
    token: VerifiedToken | None = None
    robot: RobotGrant | None = None  # a robot account: its scope limits everything

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    @property
    def label(self) -> str:
        return self.user or "anonymous"


ANONYMOUS = Principal(None, "anonymous")


class AuthService:
    def __init__(self, settings: Settings, robots: RobotService | None = None) -> None:
        conf: AuthSettings = settings.auth
        self.robots = robots  # None: no index at hand (config checks), robots refused
        self.settings = conf
        self.mode = conf.mode
        self.htpasswd = (Htpasswd(conf.htpasswd, default_cost=conf.bcrypt_cost)
                         if conf.htpasswd else None)
        self.rules = AccessRules.from_config(
            (rule.model_dump() for rule in conf.rules), conf.groups
        )
        self.issuer: TokenIssuer | None = None
        self.verifier: TokenVerifier | None = None
        token = conf.token
        self.service = token.service
        if self.mode == "token":
            if token.rootcertbundle or token.jwks:
                if token.enabled:
                    raise ValueError(
                        "auth.token: the built-in service (enabled) and an external issuer "
                        "(rootcertbundle/jwks) are exclusive"
                    )
                if not token.realm:
                    raise ValueError("auth.token.realm is required with an external issuer")
                keys = load_jwks(token.jwks) if token.jwks else {}
                certs = load_certificates(token.rootcertbundle) if token.rootcertbundle else []
                self.verifier = TokenVerifier(
                    token.issuer, token.service, keys, certs,
                    token.signing_algorithms, token.leeway_seconds,
                    token.x5c_extended_key_usages, token.x5c_max_intermediates,
                )
            else:
                key_path = token.key or os.path.join(
                    os.path.abspath(settings.data_dir), "auth", "token-signing-key.pem"
                )
                self.issuer = TokenIssuer(
                    load_or_create_key(key_path, token.algorithm),
                    token.algorithm,
                    token.issuer,
                    token.service,
                    token.expiration_seconds,
                    token.refresh_expiration_seconds,
                )
                self.verifier = self.issuer.verifier(token.leeway_seconds)

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def builtin_tokens(self) -> bool:
        return self.issuer is not None

    # -- authentication -------------------------------------------------------
    def basic(self, user: str, password: str) -> Principal:
        if is_robot(user):  # never an htpasswd user, whatever the file holds
            if self.robots is None:
                raise BadCredentials("invalid user name or password")
            try:
                grant = self.robots.authenticate(user, password)
            except RobotRefused as exc:
                raise BadCredentials("invalid user name or password") from exc
            return Principal(user, "robot", robot=grant)
        if self.htpasswd is None or not self.htpasswd.verify(user, password):
            raise BadCredentials("invalid user name or password")
        return Principal(user, "basic")

    def bearer(self, token: str) -> Principal:
        """A principal from a token; InvalidToken when it can't be trusted."""
        assert self.verifier is not None
        verified = self.verifier.verify(token)
        grant = None
        if self.builtin_tokens and (verified.robot is not None or is_robot(verified.subject)):
            # Issued to a robot: good only while the robot's token is.
            if self.robots is None or verified.robot is None:
                raise InvalidToken("robot token revoked")
            try:
                grant = self.robots.check(verified.robot, verified.subject)
            except RobotRefused as exc:
                raise InvalidToken(f"robot token {exc.reason}") from exc
        return Principal(verified.subject or None, "token", verified, grant)

    # -- authorization --------------------------------------------------------
    def can(self, principal: Principal, repository: str, action: str) -> bool:
        if not self.enabled:
            return True
        if principal.robot is not None and not principal.robot.allows(repository, action):
            return False
        if principal.token is not None:
            return principal.token.allows("repository", repository, action)
        return self.rules.allows(principal.user, repository, action)

    def rules_allow(self, principal: Principal, repository: str, action: str) -> bool:
        """What the rules (and a robot's scope) say for this caller, whatever the token carries."""
        if principal.robot is not None and not principal.robot.allows(repository, action):
            return False
        return self.rules.allows(principal.user, repository, action)

    def is_admin(self, principal: Principal) -> bool:
        if not self.enabled or principal.robot is not None:
            return False  # robots are never admins
        if principal.token is not None:
            return principal.token.allows(*ADMIN_RESOURCE, "*")
        return self.rules.is_admin(principal.user)

    def may_list_catalog(self, principal: Principal) -> bool:
        if principal.token is not None:
            return principal.token.allows(*CATALOG, "*")
        return True

    def catalog_filter(self, principal: Principal) -> Callable[[str], bool] | None:
        """A predicate over repository names, or None when every name may be listed."""
        if not self.enabled:
            return None
        if principal.token is not None and not self.builtin_tokens:
            return None  # an external issuer's catalog grant covers every repository
        if self.rules.is_admin(principal.user):
            return None
        allowed = self.rules.pull_filter(principal.user)
        if principal.robot is not None:
            in_scope = principal.robot.pull_filter()
            return lambda name: allowed(name) and in_scope(name)
        return allowed

    # -- the built-in token service ---------------------------------------------
    def grant(self, user: str | None, scopes: list[Scope],
              robot: RobotGrant | None = None) -> list[dict[str, Any]]:
        """The intersection of what was asked, what the rules allow (and the robot's scope).

        A partial (or empty) grant is not an error. Unknown resource types and
        malformed repository names are granted nothing.
        """
        granted: dict[tuple[str, str], list[str]] = {}
        admin = self.rules.is_admin(user)
        for scope in scopes:
            key = (scope.type, scope.name)
            if scope.type == "repository":
                if len(scope.name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(scope.name):
                    continue
                allowed = self.rules.allowed_actions(user, scope.name)
                if robot is not None:
                    allowed = allowed & robot.actions_on(scope.name)
                wanted = set(scope.actions)
                if "*" in wanted:
                    wanted = (wanted - {"*"}) | set(REPOSITORY_ACTIONS)
                actions = [a for a in ("pull", "push", "delete") if a in wanted & allowed]
            elif key == CATALOG:
                # Listing is filtered by the rules at request time: anyone may ask.
                actions = ["*"] if "*" in scope.actions else []
            elif key == ADMIN_RESOURCE:
                actions = ["*"] if admin and "*" in scope.actions else []
            else:
                continue
            if actions:
                merged = granted.setdefault(key, [])
                merged.extend(a for a in actions if a not in merged)
        return [{"type": k, "name": n, "actions": a} for (k, n), a in granted.items()]

    def issue(self, user: str | None, scopes: list[Scope],
              robot: RobotGrant | None = None) -> IssuedToken:
        assert self.issuer is not None
        extra = {"rbt": robot.token_id} if robot is not None else None
        return self.issuer.issue(user or "", self.grant(user, scopes, robot), extra)

    def issue_refresh(self, user: str) -> str | None:
        assert self.issuer is not None
        fingerprint = self.htpasswd.fingerprint(user) if self.htpasswd else None
        if fingerprint is None:
            return None
        return self.issuer.issue_refresh(user, fingerprint)

    def refresh(self, refresh_token: str) -> Principal:
        """The user a refresh token stands for, if they still exist with that password."""
        assert self.issuer is not None
        try:
            user, fingerprint = self.issuer.check_refresh(refresh_token)
        except InvalidToken as exc:
            raise BadCredentials(str(exc)) from exc
        current = self.htpasswd.fingerprint(user) if self.htpasswd else None
        if current is None or not hmac.compare_digest(current, fingerprint):
            raise BadCredentials("the refresh token has been revoked")
        return Principal(user, "basic")


__all__ = ["ADMIN", "PULL", "AuthService", "BadCredentials", "InvalidToken", "Principal"]
