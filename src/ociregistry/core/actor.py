"""Who is making the current change, for events, tag history and audit entries.

The web layer sets the actor when a request starts (address, request id) and
again once the caller is authenticated (user or robot); background work (GC,
retention, scheduled jobs) runs as ``SYSTEM`` or under ``acting_as``. A context
variable keeps the core free of Flask: it reads ``current_actor()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Actor:
    kind: str  # "user", "robot", "anonymous" or "system"
    name: str | None = None
    address: str | None = None
    request_id: str | None = None

    def as_user(self, name: str | None, robot: bool = False) -> Actor:
        """The same request, now known to come from ``name`` (None: anonymous)."""
        if name is None:
            return replace(self, kind="anonymous", name=None)
        return replace(self, kind="robot" if robot else "user", name=name)

    @property
    def label(self) -> str:
        return self.name or self.kind


SYSTEM = Actor("system")
_current: ContextVar[Actor] = ContextVar("ociregistry_actor", default=SYSTEM)


def current_actor() -> Actor:
    return _current.get()


def set_actor(actor: Actor) -> Token[Actor]:
    return _current.set(actor)


def reset_actor(token: Token[Actor]) -> None:
    _current.reset(token)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Run a block (a scheduled job, a CLI command) as ``actor``."""
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)
