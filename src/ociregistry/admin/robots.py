"""Robot accounts and their tokens, for administrators (the management API). No Flask here.

A thin layer over auth/robots.py (RobotService), which the CLI (``ociregistry
token``) and the web UI use too: the same checks, the same rows. The token is
returned once, by ``create``; listings never carry it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ociregistry.admin.errors import InvalidRequest, NotConfigured, NotFound
from ociregistry.auth.robots import (
    RobotError,
    RobotService,
    TokenInfo,
    parse_duration,
    parse_scope,
)


def token_dict(info: TokenInfo, now: float | None = None) -> dict[str, Any]:
    """A token as the API and ``ociregistry token list --json`` show it (never its secret)."""
    return {
        "id": info.id, "name": info.name, "user": info.user,
        "scope": [str(e) for e in info.scope], "description": info.description,
        "created_by": info.created_by, "created_at": info.created_at,
        "expires_at": info.expires_at, "last_used_at": info.last_used_at,
        "revoked_at": info.revoked_at, "state": info.state(time.time() if now is None else now),
    }


@dataclass(frozen=True)
class RobotSummary:
    """A robot (a name shared by its tokens) and how many of its tokens are live."""

    name: str
    user: str
    active_tokens: int
    tokens: int
    last_used_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RobotAdmin:
    def __init__(self, robots: RobotService | None) -> None:
        self.robots = robots  # None: authentication is off, robots mean nothing

    def _service(self) -> RobotService:
        if self.robots is None or not self.robots.enabled:
            raise NotConfigured("robot accounts need authentication and auth.robots.enabled")
        return self.robots

    def tokens(self, name: str | None = None, include_revoked: bool = False) -> list[TokenInfo]:
        found = self._service().list(include_revoked=include_revoked)
        return [t for t in found if name is None or t.name == name]

    def robots_list(self) -> list[RobotSummary]:
        """Robots that have at least one token (revoked ones count: a robot's history)."""
        now = time.time()
        by_name: dict[str, list[TokenInfo]] = {}
        for info in self._service().list(include_revoked=True):
            by_name.setdefault(info.name, []).append(info)
        out = []
        for name in sorted(by_name):
            tokens = by_name[name]
            used = [t.last_used_at for t in tokens if t.last_used_at is not None]
            out.append(RobotSummary(
                name, tokens[0].user, sum(t.state(now) == "active" for t in tokens),
                len(tokens), max(used) if used else None))
        return out

    def create(self, name: str, scope: Sequence[str], expires: str | None = None,
               description: str = "", created_by: str = "") -> tuple[TokenInfo, str]:
        """A new token for robot ``name``: its listing and the token (shown this once).

        ``scope``: ``GLOB:ACTIONS`` entries; ``expires``: ``30d``, ``12h``, ``never``,
        or None for auth.robots.default_expiry_days.
        """
        service = self._service()
        try:
            parsed = parse_scope(scope)
            lifetime: float | None | str = "default" if expires is None else \
                parse_duration(expires)
            return service.create(name, parsed, lifetime, description, created_by=created_by)
        except RobotError as exc:
            raise InvalidRequest(str(exc)) from exc

    def revoke_token(self, token_id: str) -> None:
        if not self._service().revoke(token_id=token_id[:32]):
            raise NotFound(f"no live token {token_id!r}")

    def revoke_robot(self, name: str) -> list[str]:
        """Revoke every live token of robot ``name``; the ids revoked."""
        ids = self._service().revoke(name=name.removeprefix("robot$")[:64])
        if not ids:
            raise NotFound(f"robot {name!r} has no live token")
        return ids
