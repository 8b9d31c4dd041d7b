"""The event: what every action carries, and its stored form.

An event row holds the indexed fields as columns and the rest as JSON; ``as_dict``
gives the plain form every format starts from.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ociregistry.core.actor import current_actor

# The actions the registry emits itself; other capabilities add theirs.
ACTIONS = (
    "manifest.pushed", "manifest.pulled", "manifest.deleted", "tag.moved", "tag.deleted",
    "blob.mounted", "repository.created", "repository.emptied", "gc.finished", "test",
)


def instance_name(configured: str) -> str:
    return configured or socket.gethostname()


def stamper(instance: str) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """The function the outbox calls to give an event its id, time and actor."""

    def stamp(action: str, fields: dict[str, Any]) -> dict[str, Any]:
        actor = current_actor()
        return {
            "uid": str(uuid.uuid4()), "created_at": time.time(), "action": action, **fields,
            "actor": {"kind": actor.kind, "name": actor.name, "address": actor.address},
            "request_id": actor.request_id, "instance": instance,
        }

    return stamp


@dataclass(frozen=True)
class Event:
    id: int  # position in the outbox (commit order)
    uid: str
    created_at: float
    action: str
    repository: str | None
    digest: str | None
    media_type: str | None
    artifact_type: str | None
    body: dict[str, Any]

    @classmethod
    def from_row(cls, row: Any) -> Event:
        return cls(row.id, row.uid, row.created_at, row.action, row.repository, row.digest,
                   row.media_type, row.artifact_type, json.loads(row.body))

    @classmethod
    def head(cls, row: Any) -> Event:
        """The row's columns without its body (enough for filters), not parsed."""
        return cls(row.id, row.uid, row.created_at, row.action, row.repository, row.digest,
                   row.media_type, row.artifact_type, {})

    @property
    def tags(self) -> list[str]:
        return list(self.body.get("tags") or [])

    def as_dict(self) -> dict[str, Any]:
        """The plain JSON form (also the ``data`` of a CloudEvent)."""
        body = self.body
        return {
            "id": self.uid, "sequence": self.id, "time": iso_time(self.created_at),
            "action": self.action, "repository": self.repository, "digest": self.digest,
            "tags": self.tags, "media_type": self.media_type,
            "artifact_type": self.artifact_type, "size": body.get("size"),
            "actor": body.get("actor") or {"kind": "system"},
            "request_id": body.get("request_id"), "instance": body.get("instance"),
            "details": body.get("details") or {},
        }


def iso_time(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat().replace("+00:00", "Z")


def test_event(instance: str) -> Event:
    """What "send a test event" sends (never stored)."""
    stamp = stamper(instance)("test", {"details": {"message": "a test event"}})
    return Event(0, stamp["uid"], stamp["created_at"], "test", None, None, None, None,
                 {k: v for k, v in stamp.items() if k not in ("uid", "created_at", "action")})
