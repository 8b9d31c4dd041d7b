"""Tables of the storage lifecycle: tag rules and history, pull statistics,
retention, quotas (lifecycle/). Part of schema.py, which re-exports them."""

from __future__ import annotations

import sqlalchemy as sa

from ociregistry.metadata.schema_types import Digest, Name, metadata  # noqa: F401

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
