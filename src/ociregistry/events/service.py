"""Events as the rest of the registry sees them: set-up, endpoint management, listings.

``setup`` (from runtime.build_runtime) turns the outbox on with this instance's
stamp and the pull buffer; ``start_delivery`` (from each server worker) connects
the worker's commits to the instance's delivery process (process.py), or, where
there is none (waitress), starts delivery threads in the worker itself.
``EventsService`` is what the API, the UI and the CLI call: endpoints from the
configuration file (source "config": only enable, disable, test and redeliver)
or the API (source "api": everything). A secret is shown once, when the registry
generates it; afterwards only its first characters, and custom header values never.
"""

from __future__ import annotations

import atexit
import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ociregistry import metrics
from ociregistry.admin.errors import Conflict, InvalidRequest, NotFound
from ociregistry.config import ConfigError
from ociregistry.events.delivery import Delivery, request_body, send
from ociregistry.events.filters import EndpointSpec, SpecError, check_secret
from ociregistry.events.formats import new_secret
from ociregistry.events.model import Event, instance_name, iso_time, stamper, test_event
from ociregistry.events.pulls import PullBuffer
from ociregistry.events.settings import EventEndpointSettings, EventsSettings
from ociregistry.metadata import event_queries as q
from ociregistry.metadata.store import MetadataStore

log = logging.getLogger("ociregistry.events")
CONFIG_DISABLED = "disabled in the configuration file"
SPEC_FIELDS = ("url", "format", "headers", "actions", "repositories", "media_types",
               "ca_file", "ca_pem", "timeout_seconds", "batch_max_events")


@dataclass
class EventsRuntime:
    settings: EventsSettings
    instance: str
    pulls: PullBuffer | None
    delivery: Delivery | None = None


def setup(store: MetadataStore, settings: EventsSettings) -> EventsRuntime | None:
    if not settings.enabled:
        return None
    instance = instance_name(settings.instance)
    store.events.install(stamper(instance))
    pulls = None
    if settings.pulls.enabled and settings.pulls.sample_rate > 0:
        pulls = PullBuffer(store, settings.pulls.batch_seconds, settings.pulls.sample_rate)
        store.events.on_pull = pulls.record
        atexit.register(pulls.stop)  # a worker's graceful exit writes what it buffered
    store.events.on_commit = _count_written
    return EventsRuntime(settings, instance, pulls)


_WRITTEN: dict[str, Any] = {}  # the counter's child per action (labels() locks, checks)


def _count_written(actions: list[str]) -> None:
    for action in actions:
        child = _WRITTEN.get(action)
        if child is None:
            child = _WRITTEN[action] = metrics.EVENTS_WRITTEN.labels(action)
        child.inc()


def start_delivery(store: MetadataStore, events: EventsRuntime | None,
                   registry_url: str = "") -> Delivery | None:
    if events is None or not events.settings.deliver:
        return None
    from ociregistry.events import process

    if process.delivered_elsewhere():  # gunicorn: the instance's delivery process
        store.events.on_commit = lambda actions: (_count_written(actions), process.wake())
        return None
    delivery = Delivery(store, events.settings, registry_url)
    store.events.on_commit = lambda actions: (_count_written(actions), delivery.wake())
    delivery.start()
    atexit.register(delivery.stop)  # leases given back at a graceful exit, not left to expire
    events.delivery = delivery
    return delivery


def _endpoints_changed() -> None:
    from ociregistry.events import process

    process.endpoints_changed()  # an idle instance starts its delivery process


def sync_config_endpoints(store: MetadataStore, settings: EventsSettings) -> None:
    """Make the index's "config" endpoints those of the configuration file (at start)."""
    if not settings.enabled:
        return
    wanted = {cfg.name: cfg for cfg in settings.endpoints}
    for row in q.endpoint_rows(store):
        if row.source == "config" and row.name not in wanted:
            q.delete_endpoint(store, row.name)
    for name, cfg in wanted.items():
        spec = _spec_from_config(cfg)
        row = q.endpoint_row(store, name)
        secret = cfg.secret or (row.secret if row is not None else new_secret())
        reason = None if cfg.enabled else CONFIG_DISABLED
        if row is None:
            try:
                q.insert_endpoint(store, name, "config", json.dumps(spec.as_dict()), secret,
                                  cfg.enabled, reason)
            except sa.exc.IntegrityError:  # another instance started at the same time
                pass
            continue
        if row.source != "config":
            raise ConfigError(f"events.endpoints: {name!r} was created through the API; "
                             "rename one of them")
        values: dict[str, Any] = {"spec": json.dumps(spec.as_dict()), "secret": secret}
        if not cfg.enabled:
            values.update(enabled=False, disabled_reason=CONFIG_DISABLED)
        elif row.disabled_reason == CONFIG_DISABLED:
            values.update(enabled=True, disabled_reason=None, failures=0)
        q.update_endpoint(store, name, **values)


def _spec_from_config(cfg: EventEndpointSettings) -> EndpointSpec:
    try:
        if cfg.secret:
            check_secret(cfg.secret)
        return EndpointSpec(cfg.name, cfg.url, cfg.format, dict(cfg.headers), list(cfg.actions),
                            list(cfg.repositories), list(cfg.media_types), cfg.ca_file, "",
                            cfg.timeout_seconds, cfg.batch_max_events).check()
    except SpecError as exc:
        raise ConfigError(f"events.endpoints[{cfg.name}]: {exc}") from exc


def _bad(exc: SpecError) -> InvalidRequest:
    return InvalidRequest(str(exc))


class EventsService:
    def __init__(self, store: MetadataStore, settings: EventsSettings,
                 registry_url: str = "") -> None:
        self.store = store
        self.settings = settings
        self.registry_url = registry_url

    # -- endpoints -------------------------------------------------------------------
    def endpoints(self) -> list[dict[str, Any]]:
        pending = q.pending(self.store)
        return [self._view(row, pending.get(row.id)) for row in q.endpoint_rows(self.store)]

    def endpoint(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        return self._view(row, q.pending(self.store).get(row.id))

    def _row(self, name: str) -> Any:
        row = q.endpoint_row(self.store, name)
        if row is None:
            raise NotFound(f"no endpoint named {name!r}")
        return row

    def _view(self, row: Any, pending: tuple[int, float | None] | None) -> dict[str, Any]:
        spec = json.loads(row.spec)
        count, oldest = pending or (0, None)
        return {
            "name": row.name, "source": row.source, "url": spec["url"],
            "format": spec["format"], "enabled": bool(row.enabled),
            "disabled_reason": row.disabled_reason, "consecutive_failures": row.failures,
            "actions": spec["actions"], "repositories": spec["repositories"],
            "media_types": spec["media_types"],
            "headers": {k: "***" for k in spec["headers"]},  # values may be credentials
            "custom_ca": bool(spec.get("ca_file") or spec.get("ca_pem")),
            "timeout_seconds": spec["timeout_seconds"],
            "batch_max_events": spec.get("batch_max_events", 0),
            "batch_size": EndpointSpec.from_dict(spec).batch_size(
                self.settings.batch.max_events),
            "secret_hint": row.secret[:10] + "…",
            "pending": count, "oldest_pending_at": iso_time(oldest) if oldest else None,
            "next_attempt_at": iso_time(row.next_attempt_at) if row.next_attempt_at else None,
            "created_at": iso_time(row.created_at), "updated_at": iso_time(row.updated_at),
        }

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            spec = EndpointSpec.from_dict(body).check()
            secret = check_secret(body["secret"]) if body.get("secret") else new_secret()
        except (SpecError, TypeError) as exc:
            raise InvalidRequest(str(exc)) from exc
        enabled = body.get("enabled", True)
        if not q.insert_endpoint(self.store, spec.name, "api", json.dumps(spec.as_dict()),
                                 secret, enabled, None if enabled else "disabled by an admin"):
            raise Conflict(f"an endpoint named {spec.name!r} exists")
        if enabled:
            _endpoints_changed()
        view = self.endpoint(spec.name)
        if not body.get("secret"):
            view["secret"] = secret  # shown this once
        return view

    def update(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        row = self._row(name)
        spec = json.loads(row.spec)
        changes = {k: v for k, v in body.items() if k in SPEC_FIELDS}
        values: dict[str, Any] = {}
        if (changes or "secret" in body) and row.source == "config":
            raise Conflict(f"{name!r} is defined in the configuration file; only enabled "
                           "may change here")
        if changes:
            try:
                checked = EndpointSpec.from_dict({**spec, **changes, "name": name}).check()
            except (SpecError, TypeError) as exc:
                raise InvalidRequest(str(exc)) from exc
            values["spec"] = json.dumps(checked.as_dict())
        if body.get("secret"):
            try:
                values["secret"] = check_secret(body["secret"])
            except SpecError as exc:
                raise InvalidRequest(str(exc)) from exc
        if "enabled" in body:
            if body["enabled"]:
                values.update(enabled=True, disabled_reason=None, failures=0, next_attempt_at=0)
            else:
                values.update(enabled=False, disabled_reason="disabled by an admin")
        if values:
            q.update_endpoint(self.store, name, **values)
            if values.get("enabled"):
                _endpoints_changed()
        return self.endpoint(name)

    def delete(self, name: str) -> None:
        row = self._row(name)
        if row.source == "config":
            raise Conflict(f"{name!r} is defined in the configuration file; remove it there")
        q.delete_endpoint(self.store, name)

    def test(self, name: str) -> dict[str, Any]:
        """Send a test event now (not through the outbox); the attempt is logged."""
        row = self._row(name)
        spec = EndpointSpec.from_dict(json.loads(row.spec))
        event = test_event(instance_name(self.settings.instance))
        batched = spec.batch_size(self.settings.batch.max_events) > 1  # the endpoint's form
        body = request_body(spec, [event], batched, self.registry_url)
        assert body is not None
        result = send(spec, row.secret, event.uid, body, batched=batched)
        q.log_attempt(self.store, row.id, 0, result.row(1, "test"))
        return {"event_id": event.uid, "delivered": result.ok, "status_code": result.status_code,
                "latency_ms": round(result.latency_ms, 1), "error": result.error,
                "response": result.response}

    def deliveries(self, name: str, limit: int, before: int | None,
                   outcome: str | None, event_id: str | None = None) -> list[dict[str, Any]]:
        """The delivery log: one entry per request; a batch's names its first and last
        event and how many it carried. ``event_id``: the attempts that carried it."""
        row = self._row(name)
        return [{"id": d.id, "event_id": d.uid, "action": d.action if d.event_id else "test",
                 "last_event_id": d.last_uid or d.uid, "events": d.events or 1,
                 "attempt": d.attempt, "at": iso_time(d.at), "outcome": d.outcome,
                 "status_code": d.status_code, "latency_ms": d.latency_ms, "error": d.error,
                 "response": d.response}
                for d in q.deliveries(self.store, row.id, limit, before, outcome, event_id)]

    def redeliver(self, name: str, event_id: str | None, since: float | None) -> dict[str, Any]:
        row = self._row(name)
        if (event_id is None) == (since is None):
            raise InvalidRequest("give exactly one of event_id and since")
        if event_id is not None:
            if not q.redeliver_one(self.store, row.id, event_id):
                raise NotFound(f"no event {event_id!r} (events are kept "
                               f"{self.settings.retention_seconds:.0f} s)")
            return {"queued": 1}
        assert since is not None
        return {"queued": q.redeliver_since(self.store, row.id, since)}

    # -- the outbox --------------------------------------------------------------------
    def events(self, limit: int, before: int | None, action: str | None,
               repository: str | None) -> list[dict[str, Any]]:
        return [Event.from_row(r).as_dict()
                for r in q.list_events(self.store, limit, before, action, repository)]
