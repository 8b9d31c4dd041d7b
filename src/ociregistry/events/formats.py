"""What goes on the wire: the three payload formats and the Standard Webhooks signature.

- ``plain``: the event as ``Event.as_dict`` gives it (``application/json``).
- ``cloudevents``: CloudEvents 1.0 in structured mode (``application/cloudevents+json``),
  the plain form as ``data``; ``type`` is ``io.ociregistry.<action>``.
- ``distribution``: CNCF Distribution's notification envelope
  (``application/vnd.docker.distribution.events.v1+json``), its field names, so
  receivers written for Distribution work unchanged. Distribution knows four
  actions (push, pull, delete, mount): a push under several tags is one envelope
  holding one event per tag; actions with no Distribution equivalent
  (tag.moved, which the push already tells, repository.*, gc.finished, ...) are
  not sent to such an endpoint.

Batches (``render_batch``): an endpoint whose batch size is above 1 gets up to that
many events per request, always in the batch form, even when one event is ready:

- ``plain``: ``{"events": [<event>, ...]}`` (``application/json``);
- ``cloudevents``: CloudEvents' batched mode, a JSON array of structured events
  (``application/cloudevents-batch+json``);
- ``distribution``: one envelope whose ``events`` hold every event's entries (the
  envelope was a list already: its receivers need no change).

Batch size 1 sends each event alone in the forms above (the bare event, one
structured CloudEvent, an envelope of one push).

Signatures follow the Standard Webhooks specification: ``webhook-id`` (the
event's id for a single event, the batch's for a batch; the same on every retry
of that request: receivers deduplicate on it),
``webhook-timestamp`` (seconds), ``webhook-signature`` = ``v1,`` + base64 of
HMAC-SHA256 over ``id.timestamp.body`` with the secret's decoded bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from ociregistry.events.model import Event, iso_time

FORMATS = ("plain", "cloudevents", "distribution")
DISTRIBUTION_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
CONTENT_TYPES = {
    "plain": "application/json",
    "cloudevents": "application/cloudevents+json",
    "distribution": DISTRIBUTION_MEDIA_TYPE,
}
BATCH_CONTENT_TYPES = {**CONTENT_TYPES, "cloudevents": "application/cloudevents-batch+json"}
_BATCH_IDS = uuid.UUID("5d0a3c44-55b6-4c0c-9a55-2a9a0b1f6a51")  # namespace of batch ids
_DISTRIBUTION_ACTIONS = {
    # tag.moved is not sent: the manifest.pushed of the same push names the tag.
    "manifest.pushed": ("push", "PUT"),
    "manifest.pulled": ("pull", "GET"), "manifest.deleted": ("delete", "DELETE"),
    "tag.deleted": ("delete", "DELETE"), "blob.mounted": ("mount", "POST"),
    "test": ("push", "PUT"),
}


def render(event: Event, fmt: str, registry_url: str = "") -> bytes | None:
    """The request body for ``event`` in ``fmt``; None when the format has no such event."""
    return assemble([fragment(event, fmt, registry_url)], fmt, batched=False)


def can_send(event: Event, fmt: str) -> bool:
    """Whether ``fmt`` has a form for ``event`` (Distribution knows four actions)."""
    return fmt != "distribution" or event.action in _DISTRIBUTION_ACTIONS


def render_batch(events: Sequence[Event], fmt: str, registry_url: str = ""
                 ) -> tuple[bytes, list[Event]] | None:
    """One batch request's body and the events it carries (those ``fmt`` can say);
    None when it can say none of them."""
    pieces = [fragment(e, fmt, registry_url) for e in events]
    body = assemble(pieces, fmt, batched=True)
    if body is None:
        return None
    return body, [e for e, piece in zip(events, pieces, strict=True) if piece is not None]


def fragment(event: Event, fmt: str, registry_url: str = "") -> bytes | None:
    """``event``'s part of a body in ``fmt`` (None: the format cannot say it).

    A body is its events' fragments joined in a fixed frame (``assemble``), byte
    for byte what serialising the whole document gives: a delivery process renders
    each event once per format, and the endpoints using that format share it,
    whatever batches each cuts.
    """
    if fmt == "cloudevents":
        return _dumps(cloud_event(event))
    if fmt == "distribution":
        envelope = distribution_envelope(event, registry_url)
        if envelope is None:
            return None
        return b",".join(_dumps(entry) for entry in envelope["events"])
    return _dumps(event.as_dict())


def assemble(pieces: Sequence[bytes | None], fmt: str, batched: bool) -> bytes | None:
    """The body holding these fragments (those not None); None when none is left.
    Alone (not ``batched``): the bare event (plain, CloudEvents) or an envelope of
    one (Distribution)."""
    kept = [piece for piece in pieces if piece is not None]
    if not kept:
        return None
    if fmt == "distribution":
        return b'{"events":[' + b",".join(kept) + b"]}"
    if not batched:
        return kept[0]
    if fmt == "cloudevents":
        return b"[" + b",".join(kept) + b"]"
    return b'{"events":[' + b",".join(kept) + b"]}"


def batch_id(endpoint_id: int, events: Sequence[Event]) -> str:
    """A batch's ``webhook-id``: derived from the endpoint and the events it holds, so
    each retry of the same batch (membership is frozen in the index) carries the same."""
    key = f"{endpoint_id}:{events[0].uid}:{events[-1].uid}:{len(events)}"
    return "batch_" + uuid.uuid5(_BATCH_IDS, key).hex


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def cloud_event(event: Event) -> dict[str, Any]:
    data = event.as_dict()
    doc: dict[str, Any] = {
        "specversion": "1.0", "id": event.uid, "type": f"io.ociregistry.{event.action}",
        "source": f"/ociregistry/{data['instance'] or 'registry'}",
        "time": data["time"], "datacontenttype": "application/json", "data": data,
    }
    if event.repository:
        doc["subject"] = event.repository + (f"@{event.digest}" if event.digest else "")
    return doc


def distribution_envelope(event: Event, registry_url: str = "") -> dict[str, Any] | None:
    mapped = _DISTRIBUTION_ACTIONS.get(event.action)
    if mapped is None:
        return None
    action, method = mapped
    data = event.as_dict()
    actor = data["actor"]
    target: dict[str, Any] = {"repository": event.repository or ""}
    if event.media_type:
        target["mediaType"] = event.media_type
    if event.digest:
        target["digest"] = event.digest
    if data["size"] is not None:
        target["size"] = target["length"] = data["size"]
    kind = "blobs" if event.action == "blob.mounted" else "manifests"
    if registry_url and event.repository and event.digest:
        target["url"] = f"{registry_url.rstrip('/')}/v2/{event.repository}/{kind}/{event.digest}"
    if event.action == "blob.mounted" and data["details"].get("from_repository"):
        target["fromRepository"] = data["details"]["from_repository"]
    base = {
        "timestamp": data["time"], "action": action,
        "request": {"id": data["request_id"] or "", "addr": actor.get("address") or "",
                    "method": method, "useragent": ""},
        "actor": {"name": actor["name"]} if actor.get("name") else {},
        "source": {"addr": data["instance"] or "", "instanceID": data["instance"] or ""},
    }
    tags = event.tags or [None]
    events = []
    for i, tag in enumerate(tags):
        one = {"id": event.uid if i == 0 else f"{event.uid}-{i}", **base,
               "target": dict(target, tag=tag) if tag else dict(target)}
        events.append(one)
    return {"events": events}


# -- Standard Webhooks -----------------------------------------------------------------
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a signing secret is whsec_ followed by base64")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except ValueError as exc:
        raise ValueError("a signing secret is whsec_ followed by base64") from exc
    if not 16 <= len(key) <= 64:
        raise ValueError("a signing secret holds 16 to 64 bytes")
    return key


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def masked(value: str) -> str:
    return value[:4] + "…" if len(value) > 8 else "…"


__all__ = ["BATCH_CONTENT_TYPES", "CONTENT_TYPES", "FORMATS", "assemble", "batch_id",
           "can_send", "fragment", "iso_time", "new_secret", "render", "render_batch",
           "secret_key", "signature_headers"]
