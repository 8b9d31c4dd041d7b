"""Retention's SQL: snapshots of repositories to plan on, the deletions (each re-checked
in its own write transaction, with its audit row in the same one), runs, and the
policies managed at run time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore

EXPIRY_KEYS = ("ociregistry.expires-after", "quay.expires-after")


def repositories(store: MetadataStore) -> list[tuple[int, str]]:
    r = t.repositories
    with store.read() as conn:
        return [tuple(row) for row in conn.execute(sa.select(r.c.id, r.c.name)
                                                   .order_by(r.c.name))]


def _ids(column: Any, ids: Sequence[int]) -> Any:
    return column.in_(sa.bindparam(None, list(ids), expanding=True, literal_execute=True))


def snapshot_rows(store: MetadataStore, repo_ids: Sequence[int],
                  with_expiry: bool) -> dict[str, list]:
    """Raw rows of the repositories ``repo_ids``: tags, manifests, children, expiries."""
    tg, tp, m, mp, mc = t.tags, t.tag_pulls, t.manifests, t.manifest_pulls, t.manifest_children
    tags = (sa.select(tg.c.repository_id, tg.c.name, tg.c.manifest_id, tg.c.updated_at,
                      tp.c.last_pulled_at)
            .select_from(tg.outerjoin(tp, sa.and_(tp.c.repository_id == tg.c.repository_id,
                                                  tp.c.name == tg.c.name)))
            .where(_ids(tg.c.repository_id, repo_ids)))
    manifests = (sa.select(m.c.id, m.c.repository_id, m.c.digest, m.c.created_at,
                           mp.c.last_pulled_at, m.c.subject, m.c.artifact_type)
                 .select_from(m.outerjoin(mp, mp.c.manifest_id == m.c.id))
                 .where(_ids(m.c.repository_id, repo_ids)))
    children = (sa.select(mc.c.manifest_id, mc.c.child_digest)
                .where(_ids(mc.c.repository_id, repo_ids)))
    out: dict[str, list] = {}
    with store.read() as conn:
        out["tags"] = conn.execute(tags).all()
        out["manifests"] = conn.execute(manifests).all()
        out["children"] = conn.execute(children).all()
        out["annotations"], out["labels"] = [], []
        if with_expiry:
            a, le = t.manifest_annotations, t.manifest_label_expiry
            out["annotations"] = conn.execute(
                sa.select(a.c.manifest_id, a.c.key, a.c.value)
                .select_from(a.join(m, m.c.id == a.c.manifest_id))
                .where(a.c.key.in_(EXPIRY_KEYS), _ids(m.c.repository_id, repo_ids))).all()
            out["labels"] = conn.execute(
                sa.select(le.c.manifest_id, le.c.seconds)
                .select_from(le.join(m, m.c.id == le.c.manifest_id))
                .where(le.c.seconds.is_not(None), _ids(m.c.repository_id, repo_ids))).all()
    return out


def unscanned_images(store: MetadataStore, repo_ids: Sequence[int],
                     limit: int) -> list[tuple[int, bytes]]:
    """(id, payload) of manifests whose config labels were never read for an expiry."""
    m, le = t.manifests, t.manifest_label_expiry
    query = (sa.select(m.c.id, m.c.payload)
             .where(_ids(m.c.repository_id, repo_ids), m.c.media_type.in_((
                 "application/vnd.oci.image.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v2+json")),
                 ~sa.exists().where(le.c.manifest_id == m.c.id))
             .order_by(m.c.id).limit(limit))
    with store.read() as conn:
        return [(mid, bytes(payload)) for mid, payload in conn.execute(query)]


def record_label_expiries(store: MetadataStore, found: dict[int, float | None]) -> None:
    if not found:
        return
    with store.write() as conn:
        conn.execute(store._insert(t.manifest_label_expiry)
                     .on_conflict_do_nothing(),
                     [{"manifest_id": mid, "seconds": s} for mid, s in found.items()])


# -- deletions ---------------------------------------------------------------------
def _audit(conn: Connection, run_id: int, kind: str, repository: str, tag: str | None,
           digest: str, rule: str, actor: str) -> None:
    conn.execute(t.retention_deletions.insert().values(
        run_id=run_id, kind=kind, repository=repository, tag=tag, digest=digest, rule=rule,
        actor=actor, deleted_at=time.time()))


def delete_tag_if_unchanged(store: MetadataStore, conn: Connection, run_id: int,
                            repository: str, tag: str, manifest_id: int, pushed_at: float,
                            last_pulled_at: float | None, rule: str, actor: str, digest: str,
                            hook: Callable[[Connection], None] | None = None) -> bool:
    """Inside the caller's write transaction: delete the tag if it still names the same
    manifest, was not pushed again and not pulled since the plan was made; with its
    audit row (and the hook's writes) in the same transaction."""
    tg, tp = t.tags, t.tag_pulls
    repo_id = store.repository_id(conn, repository)
    if repo_id is None:
        return False
    store.lock_manifest(conn, repo_id, digest)
    row = conn.execute(
        sa.select(tg.c.manifest_id, tg.c.updated_at, tp.c.last_pulled_at)
        .select_from(tg.outerjoin(tp, sa.and_(tp.c.repository_id == tg.c.repository_id,
                                              tp.c.name == tg.c.name)))
        .where(tg.c.repository_id == repo_id, tg.c.name == tag)).first()
    if row is None or row.manifest_id != manifest_id or row.updated_at != pushed_at:
        return False
    if (row.last_pulled_at or 0.0) > (last_pulled_at or 0.0):
        return False
    store.tag_hook.deleting(conn, repo_id, tag)  # tag history: a restore can undo this
    conn.execute(tg.delete().where(tg.c.repository_id == repo_id, tg.c.name == tag))
    _audit(conn, run_id, "tag", repository, tag, digest, rule, actor)
    if hook is not None:  # e.g. an event, committed with the deletion
        hook(conn)
    return True


def untagged_condition(cutoff: float) -> Any:
    from ociregistry.metadata.gc_queries import _untagged_condition

    return _untagged_condition(t.manifests, cutoff, history_keeps=False)


def delete_manifest_if_untagged(store: MetadataStore, conn: Connection, run_id: int,
                                repository: str, manifest_id: int, digest: str, cutoff: float,
                                rule: str, actor: str,
                                hook: Callable[[Connection], None] | None = None) -> bool:
    """Inside the caller's write transaction: delete the manifest if it is still untagged,
    no index that stays lists it, no subject that stays has it as a referrer, and it is
    older than ``cutoff`` (GC's conditions); with its audit row."""
    m = t.manifests
    row = conn.execute(sa.select(m.c.repository_id, m.c.digest)
                       .where(m.c.id == manifest_id)).first()
    if row is None or row.digest != digest:
        return False
    store.lock_manifest(conn, row.repository_id, row.digest)
    still = conn.execute(sa.select(m.c.id).where(
        m.c.id == manifest_id, *untagged_condition(cutoff))).first()
    if still is None:
        return False
    # Kept restorable (retained_manifests) while tag history within the window names it.
    store.tag_hook.deleting_manifest(conn, row.repository_id, manifest_id)
    store._delete_manifest_rows(conn, [manifest_id])
    _audit(conn, run_id, "manifest", repository, None, digest, rule, actor)
    if hook is not None:
        hook(conn)
    return True


# -- runs --------------------------------------------------------------------------
def start_run(store: MetadataStore, policy: str, dry_run: bool, trigger: str,
              started_by: str) -> int:
    with store.write() as conn:
        return int(conn.execute(t.retention_runs.insert().values(
            policy=policy, dry_run=dry_run, trigger=trigger, started_by=started_by,
            started_at=time.time(), status="running", tags_deleted=0, manifests_deleted=0,
            skipped=0)).inserted_primary_key[0])


def finish_run(store: MetadataStore, run_id: int, status: str, tags: int, manifests: int,
               skipped: int, error: str | None = None) -> None:
    with store.write() as conn:
        conn.execute(t.retention_runs.update().where(t.retention_runs.c.id == run_id).values(
            status=status, finished_at=time.time(), tags_deleted=tags,
            manifests_deleted=manifests, skipped=skipped, error=error))


RUN_COLUMNS = ("id", "policy", "dry_run", "trigger", "started_by", "started_at",
               "finished_at", "status", "tags_deleted", "manifests_deleted", "skipped", "error")


def runs(store: MetadataStore, policy: str | None, limit: int) -> list[dict[str, Any]]:
    r = t.retention_runs
    query = sa.select(*(r.c[c] for c in RUN_COLUMNS)).order_by(r.c.id.desc()).limit(limit)
    if policy:
        query = query.where(r.c.policy == policy)
    with store.read() as conn:
        return [dict(zip(RUN_COLUMNS, row, strict=True)) for row in conn.execute(query)]


def run(store: MetadataStore, run_id: int) -> dict[str, Any] | None:
    r = t.retention_runs
    with store.read() as conn:
        row = conn.execute(sa.select(*(r.c[c] for c in RUN_COLUMNS))
                           .where(r.c.id == run_id)).first()
    return dict(zip(RUN_COLUMNS, row, strict=True)) if row else None


def deletions(store: MetadataStore, run_id: int, limit: int) -> list[dict[str, Any]]:
    d = t.retention_deletions
    cols = ("kind", "repository", "tag", "digest", "rule", "actor", "deleted_at")
    with store.read() as conn:
        rows = conn.execute(sa.select(*(d.c[c] for c in cols)).where(d.c.run_id == run_id)
                            .order_by(d.c.id).limit(limit))
        return [dict(zip(cols, row, strict=True)) for row in rows]


def last_started(store: MetadataStore, policy: str) -> float | None:
    r = t.retention_runs
    with store.read() as conn:
        return conn.execute(sa.select(sa.func.max(r.c.started_at)).where(
            r.c.policy == policy, r.c.dry_run.is_(False))).scalar()


# -- policies managed at run time ---------------------------------------------------
def stored_policies(store: MetadataStore) -> Iterator[tuple[str, dict, float, str]]:
    p = t.retention_policies
    with store.read() as conn:
        rows = conn.execute(sa.select(p.c.name, p.c.definition, p.c.updated_at,
                                      p.c.updated_by).order_by(p.c.name)).all()
    for name, definition, updated_at, updated_by in rows:
        yield name, json.loads(definition), updated_at, updated_by


def put_policy(store: MetadataStore, name: str, definition: dict, who: str) -> bool:
    """Create or replace; True when it was created."""
    p = t.retention_policies
    now = time.time()
    with store.write() as conn:
        exists = conn.execute(sa.select(p.c.name).where(p.c.name == name)).first()
        text = json.dumps(definition, sort_keys=True)
        if exists:
            conn.execute(p.update().where(p.c.name == name).values(
                definition=text, updated_at=now, updated_by=who))
        else:
            conn.execute(p.insert().values(name=name, definition=text, created_at=now,
                                           updated_at=now, updated_by=who))
        return exists is None


def delete_policy(store: MetadataStore, name: str) -> bool:
    p = t.retention_policies
    with store.write() as conn:
        return conn.execute(p.delete().where(p.c.name == name)).rowcount > 0
