"""GC candidates on PostgreSQL: migration 0017's PL/pgSQL triggers record what the
SQLite ones do (the same tests as tests/unit/test_gc_candidates.py, another store)."""

from __future__ import annotations

import sqlalchemy as sa

from ociregistry.metadata import gc_queries as q
from ociregistry.metadata import schema as t
from tests.cluster.pg import migrated_store  # noqa: F401  (the "store" fixture)
from tests.unit.test_gc_candidates import (  # noqa: F401 - collected here on PostgreSQL
    push,
    test_a_run_forgets_what_is_alive_for_good_and_a_tag_deletion_records_it_again,
    test_a_subject_deleted_frees_its_referrers,
    test_a_tag_moved_off_a_manifest_records_it,
    test_an_index_deleted_frees_its_children,
    test_blobs_uploaded_and_never_referenced_and_blobs_a_manifest_let_go,
    test_the_gc_looks_at_candidates_only,
    test_within_the_grace_period_a_candidate_stays_for_a_later_run,
)


def test_postgres_reaches_manifests_by_key_from_the_candidates(store):
    """With sequential scans priced out (a small table is otherwise scanned whole), the
    plan of the GC's manifest query can reach manifests by their primary key."""
    push(store, "app", "a", tag="v1")
    m = t.manifests
    query = sa.select(m.c.id).where(m.c.id.in_(q.manifest_candidates()),
                                    *q._untagged_condition(m, 0.0, keep_since=0.0))
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.write() as conn:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql))
    assert "gc_manifest_candidates" in plan
    assert "manifests_pkey" in plan, plan
