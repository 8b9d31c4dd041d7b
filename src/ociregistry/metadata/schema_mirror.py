"""Tables of the pull-through cache (mirror/). Part of schema.py, which
re-exports them."""

from __future__ import annotations

import sqlalchemy as sa

from ociregistry.metadata.schema_types import Digest, Name, metadata  # noqa: F401

# Pull-through cache (mirror/, docs/mirror.md "Internals").
# What upstream said of a reference (tag, or digest) of a mirrored repository, and when:
# ``digest`` NULL is a cached upstream 404 (negative cache). ``repository`` is the local
# name (dockerhub/library/alpine); the tag itself lives in ``tags`` like any other.
mirror_tags = sa.Table(
    "mirror_tags",
    metadata,
    sa.Column("repository", Name, primary_key=True),
    sa.Column("reference", sa.String(160), primary_key=True),
    sa.Column("upstream", sa.String(64), nullable=False),
    sa.Column("digest", Digest, nullable=True),
    sa.Column("checked_at", sa.Float, nullable=False),
    sa.Index("ix_mirror_tags_upstream", "upstream", "checked_at"),
)

# Fills in progress: one worker of the cluster fetches a blob or manifest from upstream
# (single flight); the others wait for its commit. ``lease_until`` is renewed while bytes
# flow, so a crashed filler's row runs out and another worker takes over.
mirror_fills = sa.Table(
    "mirror_fills",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("upstream", sa.String(64), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float, nullable=False),
    sa.Column("bytes_done", sa.BigInteger, nullable=False, default=0),
)

# Per-upstream health, shared by every worker and instance.
mirror_upstreams = sa.Table(
    "mirror_upstreams",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("rate_limited_until", sa.Float, nullable=True),  # after a 429: no request
    sa.Column("ratelimit_remaining", sa.Integer, nullable=True),  # last RateLimit-Remaining
    sa.Column("last_ok_at", sa.Float, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("last_error_at", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Prefetch runs of the pull-through cache (mirror/prefetch.py): one row per run of an
# upstream's prefetch list, its progress written as it goes (the API and UI poll it).
mirror_sync_runs = sa.Table(
    "mirror_sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("upstream", sa.String(64), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),  # schedule, cli, api, ui
    sa.Column("started_by", sa.String(255), nullable=False, default=""),
    sa.Column("status", sa.String(16), nullable=False),  # running, done, failed
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("tags_total", sa.Integer, nullable=False, default=0),
    sa.Column("tags_done", sa.Integer, nullable=False, default=0),
    sa.Column("tags_failed", sa.Integer, nullable=False, default=0),
    sa.Column("bytes", sa.BigInteger, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("problems", sa.Text, nullable=False, default="[]"),  # JSON, the last 50
    sa.Index("ix_mirror_sync_runs_upstream", "upstream", "started_at"),
)
