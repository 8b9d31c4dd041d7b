"""/api/v1/events: the outbox and its webhook endpoints. Admins only.

HTTP only: each view calls events/service.py (EventsService), which the web UI
uses too. Secrets are returned once, when the registry generates one; header
values never.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app

from ociregistry.events.formats import FORMATS
from ociregistry.events.service import EventsService
from ociregistry.web.api.blueprint import operation, query, schema
from ociregistry.web.api.problems import Problem

EXTENSION = "ociregistry.api.events"
MAX_PAGE = 500


def service() -> EventsService:
    built = current_app.extensions.get(EXTENSION)
    if built is None:
        runtime = current_app.extensions["ociregistry"]
        if not runtime.settings.events.enabled:
            raise Problem("not_configured", "events are disabled (events.enabled: false)")
        built = EventsService(runtime.metadata, runtime.settings.events)
        current_app.extensions[EXTENSION] = built
    return built


ENDPOINT_PATH = {"name": "endpoint", "in": "path", "required": True,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 64}}
GLOBS = {"type": "array", "maxItems": 32, "items": {"type": "string", "minLength": 1,
                                                     "maxLength": 255}}
SPEC_PROPERTIES: dict[str, Any] = {
    "url": {"type": "string", "minLength": 8, "maxLength": 2000, "pattern": "^https?://"},
    "format": {"type": "string", "enum": list(FORMATS)},
    "headers": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "extra request headers; their values are never shown back"},
    "actions": {**GLOBS, "description": "action globs (`manifest.*`); empty: all"},
    "repositories": {**GLOBS, "description": "repository globs (`team/**`); empty: all"},
    "media_types": {**GLOBS, "description": "media or artifact type globs; empty: all"},
    "ca_pem": {"type": "string", "maxLength": 65536,
               "description": "PEM CA certificates that sign the receiver's certificate"},
    "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
    "batch_max_events": {"type": "integer", "minimum": 0, "maximum": 1000,
                         "description": "events per request; 0: events.batch.max_events; "
                                        "1: each event alone (the body is the event)"},
    "secret": {"type": "string", "minLength": 10, "maxLength": 255, "pattern": "^whsec_",
               "description": "Standard Webhooks secret (whsec_<base64>); default: generated "
                              "and returned once"},
    "enabled": {"type": "boolean"},
}
ENDPOINT_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string"}, "source": {"type": "string", "enum": ["config", "api"]},
    "url": {"type": "string"}, "format": {"type": "string"}, "enabled": {"type": "boolean"},
    "disabled_reason": {"type": ["string", "null"]},
    "consecutive_failures": {"type": "integer"},
    "actions": {"type": "array", "items": {"type": "string"}},
    "repositories": {"type": "array", "items": {"type": "string"}},
    "media_types": {"type": "array", "items": {"type": "string"}},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "custom_ca": {"type": "boolean"}, "timeout_seconds": {"type": "number"},
    "batch_max_events": {"type": "integer", "description": "as configured (0: the default)"},
    "batch_size": {"type": "integer", "description": "events per request in effect; 1: "
                                                     "single events, above: the batch form"},
    "secret_hint": {"type": "string"},
    "pending": {"type": "integer", "description": "events not yet handled"},
    "oldest_pending_at": {"type": ["string", "null"]},
    "next_attempt_at": {"type": ["string", "null"]},
    "created_at": {"type": "string"}, "updated_at": {"type": "string"},
}
ENDPOINT = schema("EventEndpoint", {"type": "object", "required": list(ENDPOINT_PROPERTIES),
                                    "properties": ENDPOINT_PROPERTIES})
NEW_ENDPOINT = schema("NewEventEndpoint", {
    "type": "object", "required": list(ENDPOINT_PROPERTIES),
    "properties": {**ENDPOINT_PROPERTIES,
                   "secret": {"type": "string", "description": "when generated: shown once"}}})
EVENT = schema("Event", {
    "type": "object", "required": ["id", "sequence", "time", "action"],
    "properties": {
        "id": {"type": "string"}, "sequence": {"type": "integer"}, "time": {"type": "string"},
        "action": {"type": "string"}, "repository": {"type": ["string", "null"]},
        "digest": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "media_type": {"type": ["string", "null"]}, "artifact_type": {"type": ["string", "null"]},
        "size": {"type": ["integer", "null"]}, "actor": {"type": "object"},
        "request_id": {"type": ["string", "null"]}, "instance": {"type": ["string", "null"]},
        "details": {"type": "object"}}})
DELIVERY = schema("EventDelivery", {
    "type": "object", "required": ["id", "attempt", "at", "outcome"],
    "properties": {
        "id": {"type": "integer"},
        "event_id": {"type": ["string", "null"], "description": "the (first) event sent"},
        "last_event_id": {"type": ["string", "null"],
                          "description": "a batch's last event (its first when alone)"},
        "events": {"type": "integer", "description": "events the request carried"},
        "action": {"type": ["string", "null"]}, "attempt": {"type": "integer"},
        "at": {"type": "string"},
        "outcome": {"type": "string", "enum": ["delivered", "failed", "dead", "test"]},
        "status_code": {"type": ["integer", "null"]}, "latency_ms": {"type": ["number", "null"]},
        "error": {"type": ["string", "null"]},
        "response": {"type": ["string", "null"], "description": "first 500 bytes"}}})
TEST_RESULT = schema("EventTestResult", {
    "type": "object", "required": ["event_id", "delivered"],
    "properties": {"event_id": {"type": "string"}, "delivered": {"type": "boolean"},
                   "status_code": {"type": ["integer", "null"]},
                   "latency_ms": {"type": "number"}, "error": {"type": ["string", "null"]},
                   "response": {"type": ["string", "null"]}}})


def _items(item: dict[str, Any], paged: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"items": {"type": "array", "items": item}}
    if paged:
        props["next"] = {"type": ["integer", "null"],
                         "description": "pass as `before` for the next page"}
    return {"type": "object", "required": list(props), "properties": props}


PAGE = (query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}),
        query("before", {"type": "integer", "minimum": 1, "maximum": 2**62}))


@operation("/events", "GET", summary="List events (newest first)", tag="events",
           permission="admin", response=_items(EVENT, paged=True),
           parameters=(*PAGE, query("action", {"type": "string", "maxLength": 64}),
                       query("repository", {"type": "string", "maxLength": 255})),
           description="The outbox: every event of the last events.retention_seconds, "
                       "endpoints or not.")
def list_events(limit: int, before: int | None, action: str | None,
                repository: str | None) -> dict[str, Any]:
    items = service().events(limit, before, action, repository)
    return {"items": items, "next": items[-1]["sequence"] if len(items) == limit else None}


@operation("/events/endpoints", "GET", summary="List webhook endpoints", tag="events",
           permission="admin", response=_items(ENDPOINT))
def list_endpoints() -> dict[str, Any]:
    return {"items": service().endpoints()}


@operation("/events/endpoints", "POST", summary="Add a webhook endpoint", tag="events",
           permission="admin", response=NEW_ENDPOINT, status=201,
           body={"type": "object", "required": ["name", "url"], "additionalProperties": False,
                 "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 64,
                                         "pattern": r"^[a-z0-9][a-z0-9_.-]*$"},
                                **SPEC_PROPERTIES}},
           description="It receives the events committed from now on (redeliver for older "
                       "ones). 409 `conflict` when the name is taken.")
def create_endpoint(body: dict[str, Any]) -> dict[str, Any]:
    return service().create(body)


@operation("/events/endpoints/{endpoint}", "GET", summary="One webhook endpoint",
           tag="events", permission="admin", response=ENDPOINT, parameters=(ENDPOINT_PATH,))
def get_endpoint(endpoint: str) -> dict[str, Any]:
    return service().endpoint(endpoint)


@operation("/events/endpoints/{endpoint}", "PATCH", summary="Edit, enable or disable",
           tag="events", permission="admin", response=ENDPOINT, parameters=(ENDPOINT_PATH,),
           body={"type": "object", "additionalProperties": False, "properties": SPEC_PROPERTIES},
           description="Endpoints of the configuration file take `enabled` only. Enabling "
                       "resets the failure count; delivery resumes at the cursor.")
def update_endpoint(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    return service().update(endpoint, body)


@operation("/events/endpoints/{endpoint}", "DELETE", summary="Delete a webhook endpoint",
           tag="events", permission="admin", response=None, status=204,
           parameters=(ENDPOINT_PATH,))
def delete_endpoint(endpoint: str) -> None:
    service().delete(endpoint)


@operation("/events/endpoints/{endpoint}/test", "POST", summary="Send a test event now",
           tag="events", permission="admin", response=TEST_RESULT,
           parameters=(ENDPOINT_PATH,),
           description="Signed and formatted like any event, action `test`; logged.")
def test_endpoint(endpoint: str) -> dict[str, Any]:
    return service().test(endpoint)


@operation("/events/endpoints/{endpoint}/deliveries", "GET",
           summary="The delivery log (each attempt, newest first)", tag="events",
           permission="admin", response=_items(DELIVERY, paged=True),
           parameters=(ENDPOINT_PATH, *PAGE,
                       query("outcome", {"type": "string",
                                         "enum": ["delivered", "failed", "dead", "test"]}),
                       query("event_id", {"type": "string", "maxLength": 64})),
           description="One entry per request: a batch's names its first and last event and "
                       "how many it carried. `event_id`: only the attempts that carried that "
                       "event (its status for this endpoint: delivered, failed, dead).")
def list_deliveries(endpoint: str, limit: int, before: int | None,
                    outcome: str | None, event_id: str | None) -> dict[str, Any]:
    items = service().deliveries(endpoint, limit, before, outcome, event_id)
    return {"items": items, "next": items[-1]["id"] if len(items) == limit else None}


@operation("/events/endpoints/{endpoint}/redeliver", "POST",
           summary="Send one event again, or everything since a time", tag="events",
           permission="admin",
           response={"type": "object", "required": ["queued"],
                     "properties": {"queued": {"type": "integer"}}},
           parameters=(ENDPOINT_PATH,),
           body={"type": "object", "additionalProperties": False, "properties": {
               "event_id": {"type": "string", "minLength": 1, "maxLength": 64,
                            "description": "the event's id"},
               "since": {"type": "string", "minLength": 10, "maxLength": 40,
                         "description": "RFC 3339 time: every event from then on, in order"}}},
           description="Exactly one of `event_id` and `since`.")
def redeliver(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    since = None
    if "since" in body:
        try:
            parsed = dt.datetime.fromisoformat(body["since"].replace("Z", "+00:00"))
        except ValueError as exc:
            raise Problem("invalid_parameter", "since: an RFC 3339 time",
                          parameter="since") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        since = parsed.timestamp()
    return service().redeliver(endpoint, body.get("event_id"), since)
