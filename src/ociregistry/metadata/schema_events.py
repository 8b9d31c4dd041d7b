"""Tables of the events outbox and its delivery (events/). Part of schema.py,
which re-exports them."""

from __future__ import annotations

import sqlalchemy as sa

from ociregistry.metadata.schema_types import Digest, Name, metadata  # noqa: F401

# Events (webhooks): the transactional outbox. A row is written in the same
# transaction as the change it describes, last, under a lock (PostgreSQL), so
# ids grow in commit order and a cursor per endpoint never skips one.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("uid", sa.String(36), nullable=False, unique=True),  # the event's public id
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("repository", Name, nullable=True),
    sa.Column("digest", Digest, nullable=True),
    sa.Column("media_type", sa.String(255), nullable=True),
    sa.Column("artifact_type", sa.String(255), nullable=True),
    sa.Column("body", sa.Text, nullable=False),  # JSON: everything else (tags, actor, ...)
    sa.Index("ix_events_created", "created_at"),
)

# Webhook receivers, from the configuration file (source "config") or the API.
# ``cursor``: the id of the last event handled (delivered, dead or filtered out).
# ``lease_*``: the one worker of the cluster delivering to it now.
event_endpoints = sa.Table(
    "event_endpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("source", sa.String(16), nullable=False),  # config | api
    sa.Column("spec", sa.Text, nullable=False),  # JSON: url, format, filters, headers, ...
    sa.Column("secret", sa.String(255), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.String(255), nullable=True),
    sa.Column("cursor", sa.BigInteger, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False, default=0),  # consecutive
    sa.Column("next_attempt_at", sa.Float, nullable=False, default=0),
    sa.Column("head_attempts", sa.Integer, nullable=False, default=0),  # of the event after cursor
    sa.Column("lease_token", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # The last event of the batch being retried (membership frozen: same events, same
    # webhook-id on every retry); null when no batch failed.
    sa.Column("batch_end", sa.BigInteger, nullable=True),
)

# Every delivery attempt (the delivery log), and the dead letters (outcome "dead").
event_deliveries = sa.Table(
    "event_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("endpoint_id", sa.Integer,
              sa.ForeignKey("event_endpoints.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # delivered | failed | dead
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("error", sa.String(500), nullable=True),
    sa.Column("response", sa.String(500), nullable=True),  # the first bytes of the answer
    # A batch request covers event_id..last_event_id and carried ``events`` of them
    # (null: one event, event_id).
    sa.Column("last_event_id", sa.BigInteger, nullable=True),
    sa.Column("events", sa.Integer, nullable=True),
    sa.Index("ix_event_deliveries_endpoint", "endpoint_id", "id"),
    sa.Index("ix_event_deliveries_event", "event_id"),
)

# Single events asked to be sent again to an endpoint, ahead of its cursor.
event_redeliveries = sa.Table(
    "event_redeliveries",
    metadata,
    sa.Column("endpoint_id", sa.Integer,
              sa.ForeignKey("event_endpoints.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("event_id", sa.BigInteger, primary_key=True),
)
