"""Robot accounts: scoped, expiring access tokens for CI. No Flask here.

A robot is a name (``ci``); callers log in as ``robot$ci`` with one of its
tokens as the password. A token reads ``ocr_<id>_<secret>``: the id (public,
12 hex digits) finds its row by primary key, the secret (32 random bytes) is
checked against the SHA-256 hash kept in that row, in constant time. Because
the secret is 256 random bits, a fast hash is enough: there is nothing to
guess by brute force, which is what a slow password hash (bcrypt) protects
against, and a fast one keeps a robot's request as cheap as a cached user's.

Every use reads the row, so expiry and revocation (a row update) apply at
once on every worker and every instance sharing the database: nothing is
cached in a process. ``last_used_at`` is written at most once a minute per
token (the row just read says when it was last written), never per request.

A token's scope is a list of ``repository-glob:actions`` (globs as in the
access rules, actions pull, push, delete or ``*``). What a robot may do is what
its scope allows AND what the access rules give its user name (``robot$ci``,
member of the implicit group ``robots``). Robots are never admins.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from ociregistry import metrics
from ociregistry.auth.rules import PULL, REPOSITORY_ACTIONS, ROBOT_PREFIX, glob_match
from ociregistry.config import RobotSettings
from ociregistry.metadata import robot_queries as q
from ociregistry.metadata.store import MetadataStore

log = logging.getLogger("ociregistry.auth")

TOKEN_PREFIX = "ocr_"
USE_INTERVAL = 60.0  # seconds between two writes of a token's last_used_at
NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
_ID_RE = re.compile(r"[0-9a-f]{12}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_GLOB_RE = re.compile(r"[a-z0-9._/*?-]{1,255}")
_DURATION_RE = re.compile(r"(\d{1,6})([smhdwy])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


class RobotError(ValueError):
    """A robot or token request that can't be carried out (bad name, scope, expiry)."""


class RobotRefused(Exception):
    """Robot credentials that must not be trusted; ``reason`` is for metrics and logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"robot token refused: {reason}")
        self.reason = reason


# -- scopes ----------------------------------------------------------------------
@dataclass(frozen=True)
class ScopeEntry:
    repositories: str  # a glob
    actions: frozenset[str]

    def __str__(self) -> str:
        actions = ",".join(a for a in ("pull", "push", "delete") if a in self.actions)
        return f"{self.repositories}:{actions}"


def parse_scope_entry(text: str) -> ScopeEntry:
    """``glob:action[,action]``, e.g. ``ci/**:pull,push``."""
    glob, sep, actions = text.strip().rpartition(":")
    if not sep or not _GLOB_RE.fullmatch(glob):
        raise RobotError(f"scope {text!r}: write REPOSITORY-GLOB:ACTIONS, e.g. 'ci/**:pull,push'")
    wanted = {a.strip() for a in actions.split(",") if a.strip()}
    if "*" in wanted:
        wanted = (wanted - {"*"}) | set(REPOSITORY_ACTIONS)
    if not wanted or not wanted <= REPOSITORY_ACTIONS:
        raise RobotError(f"scope {text!r}: actions are pull, push, delete or *")
    return ScopeEntry(glob, frozenset(wanted))


def parse_scope(entries: Iterable[str]) -> tuple[ScopeEntry, ...]:
    parsed = tuple(parse_scope_entry(e) for e in entries if e.strip())
    if not parsed:
        raise RobotError("a token needs at least one scope, e.g. 'ci/**:pull,push'")
    if len(parsed) > 50:
        raise RobotError("at most 50 scope entries")
    return parsed


def _scope_json(scope: tuple[ScopeEntry, ...]) -> str:
    return json.dumps([{"repositories": e.repositories, "actions": sorted(e.actions)}
                       for e in scope])


def _scope_from_json(raw: str) -> tuple[ScopeEntry, ...]:
    return tuple(ScopeEntry(e["repositories"], frozenset(e["actions"])) for e in json.loads(raw))


def parse_duration(text: str) -> float | None:
    """``30d``, ``12h``, ``2w``, ``1y`` ... in seconds; ``never``: None."""
    text = text.strip().lower()
    if text == "never":
        return None
    match = _DURATION_RE.fullmatch(text)
    if not match or int(match[1]) == 0:
        raise RobotError(f"expiry {text!r}: write e.g. 30d, 12h, 2w, 1y or never")
    return float(int(match[1]) * _UNITS[match[2]])


# -- what a robot may do ---------------------------------------------------------
@dataclass(frozen=True)
class RobotGrant:
    """A checked token: which robot, and what its scope allows."""

    token_id: str
    name: str
    scope: tuple[ScopeEntry, ...]

    @property
    def user(self) -> str:
        return ROBOT_PREFIX + self.name

    def actions_on(self, repository: str) -> frozenset[str]:
        out: set[str] = set()
        for entry in self.scope:
            if glob_match(entry.repositories, repository):
                out |= entry.actions
        return frozenset(out)

    def allows(self, repository: str, action: str) -> bool:
        return action in self.actions_on(repository)

    def pull_filter(self) -> Callable[[str], bool]:
        globs = [e.repositories for e in self.scope if PULL in e.actions]
        return lambda name: any(glob_match(g, name) for g in globs)


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never its secret)."""

    id: str
    name: str
    scope: tuple[ScopeEntry, ...]
    description: str
    created_by: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None

    @property
    def user(self) -> str:
        return ROBOT_PREFIX + self.name

    @property
    def scope_text(self) -> str:
        return " ".join(str(e) for e in self.scope)

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


def _info(row: q.RobotTokenRow) -> TokenInfo:
    return TokenInfo(row.id, row.name, _scope_from_json(row.scope), row.description,
                     row.created_by, row.created_at, row.expires_at, row.last_used_at,
                     row.revoked_at)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token; None otherwise."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or not _ID_RE.fullmatch(token_id) or not _SECRET_RE.fullmatch(secret):
        return None
    return token_id, secret


class RobotService:
    """Create, check, list and revoke robot tokens, in the metadata index."""

    def __init__(self, store: MetadataStore, settings: RobotSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    # -- administration ---------------------------------------------------------
    def lifetime(self, expires_in: float | None | str = "default") -> float | None:
        """The lifetime to give a new token, checked against the configured maximum."""
        limit = self.settings.max_lifetime_days * 86400.0
        if expires_in == "default":
            expires_in = self.settings.default_expiry_days * 86400.0
            if limit:
                expires_in = min(expires_in, limit)
        if expires_in is None:
            if limit:
                raise RobotError(f"tokens must expire (auth.robots.max_lifetime_days: "
                                 f"{self.settings.max_lifetime_days})")
            return None
        assert not isinstance(expires_in, str)
        if expires_in <= 0:
            raise RobotError("the lifetime must be positive")
        if limit and expires_in > limit:
            raise RobotError(f"at most {self.settings.max_lifetime_days} days "
                             "(auth.robots.max_lifetime_days)")
        return expires_in

    def create(self, name: str, scope: tuple[ScopeEntry, ...],
               expires_in: float | None | str = "default", description: str = "",
               created_by: str = "") -> tuple[TokenInfo, str]:
        """A new token for robot ``name``: its listing and the token itself (shown once)."""
        if not self.enabled:
            raise RobotError("robot accounts are disabled (auth.robots.enabled)")
        if not NAME_RE.fullmatch(name):
            raise RobotError("a robot name is 1 to 64 of a-z 0-9 . _ - (starting and ending "
                             "with a letter or digit)")
        if not scope:
            raise RobotError("a token needs at least one scope")
        lifetime = self.lifetime(expires_in)
        now = self.clock()
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = q.RobotTokenRow(
            id=token_id, name=name, secret_hash=_hash(secret), scope=_scope_json(scope),
            description=description[:255], created_by=created_by[:255], created_at=now,
            expires_at=None if lifetime is None else now + lifetime,
            last_used_at=None, revoked_at=None,
        )
        q.insert(self.store, row)
        log.info("robot token %s created for %s by %s", token_id, name, created_by or "?")
        return _info(row), f"{TOKEN_PREFIX}{token_id}_{secret}"

    def list(self, include_revoked: bool = False) -> list[TokenInfo]:
        return [_info(r) for r in q.list_tokens(self.store, include_revoked)]

    def revoke(self, token_id: str | None = None, name: str | None = None) -> list[str]:
        """Revoke a token (by id) or every live token of a robot (by name)."""
        if (token_id is None) == (name is None):
            raise RobotError("say which token id or which robot name to revoke")
        ids = q.revoke(self.store, self.clock(), token_id=token_id, name=name)
        for revoked in ids:
            log.info("robot token %s revoked", revoked)
        return ids

    # -- checks, on every request -----------------------------------------------------
    def authenticate(self, user: str, password: str) -> RobotGrant:
        """The grant of Basic credentials ``robot$NAME`` / token; RobotRefused if not good."""
        parts = split_token(password)
        if parts is None:
            raise self._refused("malformed")
        row = self._live_row(parts[0], user)
        if not hmac.compare_digest(row.secret_hash, _hash(parts[1])):
            raise self._refused("bad_secret")
        return self._granted(row)

    def check(self, token_id: str, user: str) -> RobotGrant:
        """The grant behind a bearer token issued to a robot: still live, same robot."""
        return self._granted(self._live_row(token_id, user))

    def _live_row(self, token_id: str, user: str) -> q.RobotTokenRow:
        if not self.enabled:
            raise self._refused("disabled")
        row = q.get(self.store, token_id)
        if row is None or ROBOT_PREFIX + row.name != user:
            raise self._refused("unknown")
        if row.revoked_at is not None:
            raise self._refused("revoked")
        if row.expires_at is not None and self.clock() >= row.expires_at:
            raise self._refused("expired")
        return row

    def _granted(self, row: q.RobotTokenRow) -> RobotGrant:
        now = self.clock()
        if row.last_used_at is None or now - row.last_used_at >= USE_INTERVAL:
            try:
                q.touch(self.store, row.id, now, now - USE_INTERVAL)
            except sa.exc.OperationalError as exc:  # busy index: the next use records it
                log.debug("last_used_at of robot token %s not recorded: %s", row.id, exc)
        metrics.ROBOT_AUTH.labels("success").inc()
        return RobotGrant(row.id, row.name, _scope_from_json(row.scope))

    @staticmethod
    def _refused(reason: str) -> RobotRefused:
        metrics.ROBOT_AUTH.labels(reason).inc()
        return RobotRefused(reason)
