"""What the index keeps for listings at scale, written with the manifest rows.

``repository_stats`` holds each repository's deduplicated size, kept in the same
transaction as every manifest insert and delete (a push runs the prepared
statement "stats_add_manifest" of store.py; deletes subtract here), and
``manifest_annotations`` one row per annotation for indexed search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import schema as t


def annotation_rows(manifest_id: int, annotations: dict[str, str]) -> list[dict[str, Any]]:
    """manifest_annotations rows (values cut to the indexed length, over-long keys left out)."""
    return [{"manifest_id": manifest_id, "key": k, "value": v[:t.ANNOTATION_VALUE]}
            for k, v in annotations.items() if len(k) <= t.ANNOTATION_KEY]


def subtract(conn: Connection, insert: Callable[[sa.Table], Any], repo_id: int,
             digests: Sequence[str], manifest_ids: Sequence[int]) -> None:
    """Remove from the repository's size the blobs of ``digests`` that no manifest of
    the repository other than ``manifest_ids`` (being deleted) references."""
    rs, mb, m, b = t.repository_stats, t.manifest_blobs, t.manifests, t.blobs
    # The stats row first, locked (PostgreSQL): a concurrent push to the same
    # repository waits here, and the next statement then sees its references.
    conn.execute(insert(rs).values(repository_id=repo_id, size=0)
                 .on_conflict_do_nothing(index_elements=["repository_id"]))
    conn.execute(sa.select(rs.c.size).where(rs.c.repository_id == repo_id).with_for_update())
    elsewhere = (
        sa.select(mb.c.digest).select_from(mb.join(m, m.c.id == mb.c.manifest_id))
        .where(m.c.repository_id == repo_id, mb.c.digest == b.c.digest,
               mb.c.manifest_id.not_in(list(manifest_ids)))
    )
    delta = (
        sa.select(sa.func.coalesce(sa.func.sum(b.c.size), 0))
        .where(b.c.digest.in_(list(set(digests))), ~sa.exists(elsewhere))
        .scalar_subquery()
    )
    conn.execute(rs.update().where(rs.c.repository_id == repo_id)
                 .values(size=rs.c.size - delta))
