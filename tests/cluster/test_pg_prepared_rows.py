"""The write path's statements on the driver cursor (metadata/prepared.py ``rows``)
on PostgreSQL: the checks of tests/unit/test_prepared_rows.py, and a connection the
server cut mid-transaction raised as the error the fault handling answers with 503."""

from __future__ import annotations

import pytest
import sqlalchemy.exc as sa_exc

from ociregistry.faults import unavailable
from ociregistry.metadata import write_statements as w
from ociregistry.metadata.store import MetadataStore
from tests.cluster.pg import migrated_store  # noqa: F401  (the "store" fixture)
from tests.unit.test_prepared_rows import check_errors, check_one_transaction, check_same_answers


def test_same_answers_on_postgresql(store: MetadataStore) -> None:
    check_same_answers(store)


def test_one_transaction_on_postgresql(store: MetadataStore) -> None:
    check_one_transaction(store)


def test_constraint_errors_on_postgresql(store: MetadataStore) -> None:
    check_errors(store)


def test_a_connection_cut_mid_transaction_is_a_database_outage(store: MetadataStore) -> None:
    """The server ends the backend between two statements of a write: the next
    statement's error is SQLAlchemy's, marked invalidated (503, not 500), and the
    pool replaces the connection for the next request."""
    with pytest.raises(sa_exc.DBAPIError) as caught, store.write() as conn:
        w.repository_id(conn, "a/b")
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with store.engine.connect() as killer:
            killer.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        w.repository_id(conn, "a/b")
    assert caught.value.connection_invalidated
    assert unavailable(caught.value) == "database"
    with store.write() as conn:
        assert w.repository_id(conn, "a/b") is None


def test_mounts_and_tag_pushes_on_postgresql(pg_url: str, tmp_path) -> None:
    """The mount's source check inside its transaction, a refused mount rolled back,
    and a tag push's single read of the tag (tests/unit/test_small_writes.py) on
    PostgreSQL: the same answers, events and history."""
    import hashlib
    import json

    import sqlalchemy as sa

    from ociregistry.config import Settings
    from ociregistry.metadata import schema as t
    from ociregistry.runtime import build_runtime

    mt = "application/vnd.oci.image.manifest.v1+json"
    rt = build_runtime(Settings(data_dir=str(tmp_path), database={"url": pg_url}), migrate=True)
    try:
        registry = rt.registry
        configs = [json.dumps({"seed": i}).encode() for i in (1, 2)]
        digests = ["sha256:" + hashlib.sha256(c).hexdigest() for c in configs]
        manifests = []
        for config, digest in zip(configs, digests, strict=True):
            registry.uploads.monolithic("src/app", digest, [config])
            manifests.append(json.dumps({"schemaVersion": 2, "mediaType": mt, "layers": [],
                                         "config": {"mediaType": "application/x", "size":
                                                    len(config), "digest": digest}}).encode())
        assert registry.uploads.mount("dst/app", digests[0], "no/such") is None
        assert registry.uploads.mount("dst/app", digests[0], "src/app") == len(configs[0])
        assert registry.uploads.mount("dst/app", digests[1], None) == len(configs[1])
        for manifest in (manifests[0], manifests[0], manifests[1]):
            registry.put_manifest("dst/app", "v1", manifest, mt)
        with rt.metadata.read() as conn:
            actions = [a for a, in conn.execute(sa.select(t.events.c.action)
                                                .order_by(t.events.c.id))]
            history = [tuple(r) for r in conn.execute(sa.select(
                t.tag_history.c.action, t.tag_history.c.previous_digest)
                .where(t.tag_history.c.tag == "v1").order_by(t.tag_history.c.id))]
        assert actions.count("blob.mounted") == 2 and actions.count("tag.moved") == 1
        assert history[0][0] == "push" and history[1][0] == "move" and len(history) == 2
    finally:
        rt.metadata.dispose()
