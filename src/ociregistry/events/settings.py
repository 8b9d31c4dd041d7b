"""The ``events`` section of the configuration (webhooks, docs/events.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventEndpointSettings(_Section):
    """One webhook receiver (docs/events.md)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
                      description="unique; names it in the API, the UI and the metrics")
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2000)
    format: Literal["plain", "cloudevents", "distribution"] = Field(
        "plain", description="plain JSON, CloudEvents 1.0 (structured) or the Distribution "
        "notification envelope")
    secret: str = Field("", description="whsec_<base64> Standard Webhooks signing secret; "
                        "empty: one is generated and kept in the index")
    headers: dict[str, str] = Field({}, description="extra request headers (e.g. Authorization)")
    actions: list[str] = Field([], description="action globs to send (manifest.*); empty: all")
    repositories: list[str] = Field([], description="repository globs; empty: all")
    media_types: list[str] = Field([], description="media or artifact type globs; empty: all")
    ca_file: str = Field("", description="PEM CAs that sign the receiver's certificate; "
                         "empty: the system's")
    timeout_seconds: float = Field(10, gt=0, le=300)
    enabled: bool = True
    batch_max_events: int = Field(0, ge=0, le=1000, description="events per request; 0: "
                                  "events.batch.max_events; 1: each event alone (no batch form)")


class EventBatchSettings(_Section):
    max_events: int = Field(100, ge=1, le=1000, description="events per request at most "
                            "(endpoints may set their own batch_max_events; 1: no batches)")
    max_wait_seconds: float = Field(0.5, ge=0, le=60, description="how long a batch that is "
                                    "not full waits for more events after its first one")


class EventPullSettings(_Section):
    enabled: bool = Field(True, description="manifest GETs (never HEADs) become events")
    batch_seconds: float = Field(
        10, ge=0, le=3600, description="pulls of one manifest by one caller within this "
        "window become one event with a count; 0: one event per pull")
    sample_rate: float = Field(1.0, ge=0, le=1, description="fraction of pulls recorded")


class EventsSettings(_Section):
    """Webhooks from a transactional outbox (docs/events.md)."""

    enabled: bool = Field(True, description="write events in the transaction of each change "
                          "(kept retention_seconds, listed by the API even without endpoints)")
    deliver: bool = Field(True, description="this instance delivers events (one delivery "
                          "process beside its workers); false: it only writes them, other "
                          "instances deliver")
    instance: str = Field("", description="this instance's name in events; default: host name")
    endpoints: list[EventEndpointSettings] = []
    pulls: EventPullSettings = EventPullSettings()
    poll_interval_seconds: float = Field(1.0, gt=0, le=60)
    max_attempts: int = Field(12, ge=1, description="attempts per event, then dead letter")
    max_age_seconds: float = Field(86400, gt=0, description="an event older than this that "
                                   "still fails is a dead letter")
    backoff_initial_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(300, gt=0)
    disable_after_failures: int = Field(50, ge=1, description="consecutive failed attempts "
                                        "after which an endpoint is disabled")
    retention_seconds: float = Field(7 * 86400, gt=0, description="events and delivery log "
                                     "entries older than this are deleted")
    batch: EventBatchSettings = EventBatchSettings()

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, value: list[EventEndpointSettings]) -> list[EventEndpointSettings]:
        names = [e.name for e in value]
        if len(names) != len(set(names)):
            raise ValueError("endpoint names must be unique")
        return value
