"""Tables of the metadata index (SQLAlchemy Core). Migrations live in migrations/.

The core tables are here; those of the lifecycle, events and mirror capabilities are
in schema_lifecycle.py, schema_events.py and schema_mirror.py, re-exported below so
that ``schema.<table>`` names every table."""

from __future__ import annotations

import sqlalchemy as sa

from ociregistry.metadata.schema_types import Digest, Name, metadata  # noqa: F401

repositories = sa.Table(
    "repositories",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", Name, nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    # One more whenever a tag of the repository is created, deleted or renamed: kept by
    # triggers (migration 0018); the /v2 tags list serves a page built under it again
    # only while it is unchanged (tag_list_cache.py).
    sa.Column("tags_version", sa.BigInteger, nullable=False, server_default="0"),
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

# The capabilities' tables (imported last: they use the types above).
from ociregistry.metadata.schema_events import (  # noqa: E402, F401
    event_deliveries,
    event_endpoints,
    event_redeliveries,
    events,
)
from ociregistry.metadata.schema_lifecycle import (  # noqa: E402, F401
    manifest_label_expiry,
    manifest_pulls,
    quota_blobs,
    quota_repositories,
    quotas,
    retained_manifest_refs,
    retained_manifests,
    retention_deletions,
    retention_policies,
    retention_runs,
    tag_history,
    tag_pulls,
    tag_rules,
)
from ociregistry.metadata.schema_mirror import (  # noqa: E402, F401
    mirror_fills,
    mirror_sync_runs,
    mirror_tags,
    mirror_upstreams,
)
