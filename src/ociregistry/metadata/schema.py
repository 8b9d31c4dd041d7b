"""Tables of the metadata index (SQLAlchemy Core). Migrations live in migrations/."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Names sort byte-wise ("ASCIIbetical") on every database, as the spec allows.
Name = sa.String(512).with_variant(sa.String(512, collation="C"), "postgresql")
Digest = sa.String(160)

repositories = sa.Table(
    "repositories",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", Name, nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Every blob the registry holds, once, whatever repositories link it.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("digest", Digest, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    # Last time something uploaded or linked it: the GC grace period counts from here.
    sa.Column("touched_at", sa.Float, nullable=False),
)

# A blob is visible in a repository only through a link (upload or mount).
repository_blobs = sa.Table(
    "repository_blobs",
    metadata,
    sa.Column(
        "repository_id",
        sa.Integer,
        sa.ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "digest", Digest, sa.ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_repository_blobs_digest", "digest"),
)

manifests = sa.Table(
    "manifests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "repository_id",
        sa.Integer,
        sa.ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("digest", Digest, nullable=False),
    sa.Column("media_type", sa.String(255), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    # The exact bytes as pushed: a manifest GET is one indexed row read.
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("subject", Digest, nullable=True),
    sa.Column("artifact_type", sa.String(255), nullable=True),
    sa.Column("annotations", sa.Text, nullable=True),  # JSON, for referrers
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_digest"),
    sa.Index("ix_manifests_subject", "repository_id", "subject"),
    sa.Index("ix_manifests_repository_created", "repository_id", "created_at"),
)

# Blobs a manifest references (config, layers): the GC's mark set.
manifest_blobs = sa.Table(
    "manifest_blobs",
    metadata,
    sa.Column(
        "manifest_id",
        sa.Integer,
        sa.ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("digest", Digest, primary_key=True),
    sa.Index("ix_manifest_blobs_digest", "digest"),
)

# Manifests an index references, within the same repository.
manifest_children = sa.Table(
    "manifest_children",
    metadata,
    sa.Column(
        "manifest_id",
        sa.Integer,
        sa.ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("child_digest", Digest, primary_key=True),
    sa.Column("repository_id", sa.Integer, nullable=False),
    sa.Index("ix_manifest_children_child", "repository_id", "child_digest"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column(
        "repository_id",
        sa.Integer,
        sa.ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", Name, primary_key=True),
    sa.Column(
        "manifest_id",
        sa.Integer,
        sa.ForeignKey("manifests.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_tags_manifest", "manifest_id"),
    sa.Index("ix_tags_repository_updated", "repository_id", "updated_at"),
    sa.Index("ix_tags_updated", "updated_at"),
)

# A manifest's annotations, one row per key, for search: the key exactly, or the
# value by prefix, answered from the indexes (manifests.annotations keeps the JSON).
# Written with the manifest in the push transaction. Values are kept up to
# ANNOTATION_VALUE chars (index entries have a size limit); longer keys are left out.
ANNOTATION_KEY, ANNOTATION_VALUE = 255, 400
manifest_annotations = sa.Table(
    "manifest_annotations",
    metadata,
    sa.Column(
        "manifest_id",
        sa.Integer,
        sa.ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(ANNOTATION_KEY).with_variant(
        sa.String(ANNOTATION_KEY, collation="C"), "postgresql"), primary_key=True),
    sa.Column("value", sa.String(ANNOTATION_VALUE).with_variant(
        sa.String(ANNOTATION_VALUE, collation="C"), "postgresql"), nullable=False),
    sa.Index("ix_manifest_annotations_key", "key"),
    sa.Index("ix_manifest_annotations_value", "value"),
)

# Each repository's deduplicated size (the bytes of the distinct blobs its manifests
# reference), kept up to date by the manifest inserts and deletes in the same
# transaction, so that listing repositories by size need not compute every one.
repository_stats = sa.Table(
    "repository_stats",
    metadata,
    sa.Column(
        "repository_id",
        sa.Integer,
        sa.ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Index("ix_repository_stats_size", "size"),
)

uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "repository_id",
        sa.Integer,
        sa.ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("algorithm", sa.String(16), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # Who opened it, when authentication is on ("" anonymous); NULL without auth.
    sa.Column("owner", sa.String(255), nullable=True),
    # The running hash at ``size`` (core/hashstate.py), so any instance can go on.
    sa.Column("hash_state", sa.LargeBinary, nullable=True),
    # The storage driver's record of the bytes (S3: multipart parts, tail object).
    sa.Column("storage_state", sa.Text, nullable=True),
    # Who is appending right now, until when (drivers without their own lock).
    sa.Column("lease_token", sa.String(36), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Index("ix_uploads_owner", "owner"),
)

# Small named values every instance must see alike: the UI's generated session
# key, the progress of a GC started from the UI.
shared_state = sa.Table(
    "shared_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Cluster-wide named locks with an expiry (one GC at a time).
locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

gc_runs = sa.Table(
    "gc_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("manifests_deleted", sa.Integer, nullable=False, default=0),
    sa.Column("blobs_deleted", sa.Integer, nullable=False, default=0),
    sa.Column("bytes_freed", sa.BigInteger, nullable=False, default=0),
    sa.Column("uploads_expired", sa.Integer, nullable=False, default=0),
)

# Robot accounts' access tokens (auth/robots.py). A robot is a name shared by its
# tokens; each token has its own scope and expiry. The token's secret is kept only
# as a SHA-256 hash; ``id`` is the public part of the token (``ocr_<id>_<secret>``).
robot_tokens = sa.Table(
    "robot_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),  # hex SHA-256
    sa.Column("scope", sa.Text, nullable=False),  # JSON [{"repositories": glob, "actions": [...]}]
    sa.Column("description", sa.String(255), nullable=False, default=""),
    sa.Column("created_by", sa.String(255), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),  # NULL: never
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Index("ix_robot_tokens_name", "name"),
)

# Signed-in web UI sessions. The cookie carries only the session id; its SHA-256
# is the key here, so a copy of the table signs nobody in. ``stamp`` is the
# fingerprint of the user's password hash at sign-in: a changed password ends it.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(255), nullable=False),
    sa.Column("stamp", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Index("ix_ui_sessions_user", "user"),
    sa.Index("ix_ui_sessions_expires", "expires_at"),
)

# Request rate limits shared by every worker and instance: one row per key
# (client address or user), a GCRA bucket ("theoretical arrival time").
rate_limit_buckets = sa.Table(
    "rate_limit_buckets",
    metadata,
    sa.Column("key", sa.String(160), primary_key=True),
    sa.Column("tat", sa.Float, nullable=False),
    # The nonce of the last grant: tells the granting statement it won.
    sa.Column("grant_id", sa.String(32), nullable=False),
    sa.Index("ix_rate_limit_buckets_tat", "tat"),
)

# Failed password checks per key (client address or user name) in a window
# that starts at the first failure: exact across processes (one atomic upsert).
auth_failures = sa.Table(
    "auth_failures",
    metadata,
    sa.Column("key", sa.String(160), primary_key=True),
    sa.Column("window_start", sa.Float, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Index("ix_auth_failures_window", "window_start"),
)

# Runs of `ociregistry import distribution` (importer/status.py): what the
# management API and the UI show while an import runs on some machine.
# ``stats`` is the JSON of the counters (updated every few seconds), ``problems``
# the JSON of the first problems reported; a run killed stays "running" with an
# ``updated_at`` that stops moving (the API calls it "stalled").
import_runs = sa.Table(
    "import_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(1024), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # running, finished, failed
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("stats", sa.Text, nullable=False),
    sa.Column("problems", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)

# -- tag lifecycle (lifecycle/tag_rules.py, lifecycle/tag_history.py) ------------
# Every change of a tag: pushed (digest set, previous NULL), moved (previous -> digest),
# deleted (digest NULL), restored. Written in the transaction that changes the tag.
# A digest named here within the restore window keeps its manifest and blobs from GC.
tag_history = sa.Table(
    "tag_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "repository_id",
        sa.Integer,
        sa.ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("tag", Name, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # push, move, delete, restore
    sa.Column("digest", Digest, nullable=True),
    sa.Column("previous_digest", Digest, nullable=True),
    sa.Column("actor_kind", sa.String(16), nullable=False),
    sa.Column("actor_name", sa.String(255), nullable=True),
    sa.Column("actor_address", sa.String(64), nullable=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_tag_history_tag", "repository_id", "tag", "id"),
    sa.Index("ix_tag_history_digest", "repository_id", "digest", "at"),
    sa.Index("ix_tag_history_previous", "repository_id", "previous_digest", "at"),
    sa.Index("ix_tag_history_at", "at"),
)

# A manifest deleted by digest while tag history still names it: its bytes and
# references, kept until no history entry within the restore window names it.
retained_manifests = sa.Table(
    "retained_manifests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "repository_id",
        sa.Integer,
        sa.ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("digest", Digest, nullable=False),
    sa.Column("media_type", sa.String(255), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("subject", Digest, nullable=True),
    sa.Column("deleted_at", sa.Float, nullable=False),
    sa.UniqueConstraint("repository_id", "digest", name="uq_retained_manifests_digest"),
    sa.Index("ix_retained_manifests_subject", "repository_id", "subject"),
)

# What a retained manifest references: blobs ("blob") and index children ("child").
retained_manifest_refs = sa.Table(
    "retained_manifest_refs",
    metadata,
    sa.Column(
        "retained_id",
        sa.Integer,
        sa.ForeignKey("retained_manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("digest", Digest, primary_key=True),
    sa.Index("ix_retained_manifest_refs_digest", "digest", "kind"),
)

# Immutable and protected tag rules managed at run time (the configuration file's
# rules are not stored: they apply as well, read-only).
tag_rules = sa.Table(
    "tag_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # immutable, protected
    sa.Column("repositories", sa.String(512), nullable=False),  # glob
    sa.Column("tags", sa.String(255), nullable=False),  # glob
    sa.Column("users", sa.Text, nullable=False),  # JSON list (protected: who may change)
    sa.Column("groups", sa.Text, nullable=False),  # JSON list
    sa.Column("description", sa.String(255), nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# -- lifecycle: pull statistics and retention (lifecycle/) ---------------------------
# How often and when a tag, and a manifest, was last pulled (manifest GET, not HEAD).
# Written in batches by each worker's buffer (lifecycle/pull_stats.py): count += n,
# last = max. A row goes with its tag or manifest (cascade).
tag_pulls = sa.Table(
    "tag_pulls",
    metadata,
    sa.Column("repository_id", sa.Integer, primary_key=True),
    sa.Column("name", Name, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("last_pulled_at", sa.Float, nullable=False),
    sa.ForeignKeyConstraint(["repository_id", "name"], ["tags.repository_id", "tags.name"],
                            ondelete="CASCADE"),
    sa.Index("ix_tag_pulls_last", "repository_id", "last_pulled_at"),
)

manifest_pulls = sa.Table(
    "manifest_pulls",
    metadata,
    sa.Column(
        "manifest_id",
        sa.Integer,
        sa.ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("last_pulled_at", sa.Float, nullable=False),
)

# The expiry a manifest's image configuration labels ask for (quay.expires-after,
# ociregistry.expires-after), read once per manifest by the first retention run that
# needs it; NULL: no such label. Manifest annotations are read from
# manifest_annotations directly.
manifest_label_expiry = sa.Table(
    "manifest_label_expiry",
    metadata,
    sa.Column(
        "manifest_id",
        sa.Integer,
        sa.ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seconds", sa.Float, nullable=True),
)

# Retention policies managed at run time (/api/v1/retention/policies); those of the
# configuration file are not stored. ``definition`` is the policy as JSON.
retention_policies = sa.Table(
    "retention_policies",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=False, default=""),
)

# One row per retention run (dry runs too) and one per deletion it made: the audit.
retention_runs = sa.Table(
    "retention_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("policy", sa.String(64), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),  # schedule, cli, api, ui
    sa.Column("started_by", sa.String(255), nullable=False, default=""),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # running, done, failed
    sa.Column("tags_deleted", sa.Integer, nullable=False, default=0),
    sa.Column("manifests_deleted", sa.Integer, nullable=False, default=0),
    sa.Column("skipped", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_retention_runs_policy", "policy", "started_at"),
)

retention_deletions = sa.Table(
    "retention_deletions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "run_id",
        sa.Integer,
        sa.ForeignKey("retention_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("kind", sa.String(8), nullable=False),  # tag, manifest
    sa.Column("repository", Name, nullable=False),
    sa.Column("tag", Name, nullable=True),
    sa.Column("digest", Digest, nullable=False),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("deleted_at", sa.Float, nullable=False),
    sa.Index("ix_retention_deletions_run", "run_id"),
    sa.Index("ix_retention_deletions_repository", "repository", "deleted_at"),
)

# Quotas per repository namespace (lifecycle/quotas.py). ``blob_bytes`` and
# ``upload_bytes`` are the namespace's usage, kept in the same transactions that
# add or remove what they count (metadata/quota_accounting.py).
quotas = sa.Table(
    "quotas",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("pattern", Name, nullable=False, unique=True),  # repository glob: team-a/**
    sa.Column("limit_bytes", sa.BigInteger, nullable=False),
    sa.Column("warning_bytes", sa.BigInteger, nullable=True),
    sa.Column("blob_bytes", sa.BigInteger, nullable=False, default=0),
    sa.Column("upload_bytes", sa.BigInteger, nullable=False, default=0),
    sa.Column("source", sa.String(16), nullable=False),  # "config" or "api"
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Which repositories each quota's pattern matches, written when either is created.
quota_repositories = sa.Table(
    "quota_repositories",
    metadata,
    sa.Column("quota_id", sa.Integer, sa.ForeignKey("quotas.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("repository_id", sa.Integer,
              sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    sa.Index("ix_quota_repositories_repository", "repository_id"),
)

# Per quota and blob: how many links and manifest references inside the namespace
# hold the blob (``refs``) and the size counted when the first one came.
quota_blobs = sa.Table(
    "quota_blobs",
    metadata,
    sa.Column("quota_id", sa.Integer, sa.ForeignKey("quotas.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("digest", Digest, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("refs", sa.Integer, nullable=False),
)

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
# What may have become garbage since the last GC, written by triggers (migration
# 0017): manifests that were pushed or lost a tag, an index or a subject; blobs
# that were uploaded or lost a reference. The GC examines only these rows.
gc_manifest_candidates = sa.Table(
    "gc_manifest_candidates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("manifest_id", sa.Integer, nullable=False),
)
gc_blob_candidates = sa.Table(
    "gc_blob_candidates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("digest", Digest, nullable=False),
)
