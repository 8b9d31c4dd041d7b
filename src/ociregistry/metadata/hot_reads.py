"""The hot read statements (manifest by tag or digest, a blob's size, a tags page),
run on a pooled driver connection without SQLAlchemy's per-statement machinery.

A SQLAlchemy ``Connection`` plus ``exec_driver_sql`` costs about 45 µs per
statement on top of what SQLite needs (a Connection object, an execution
context, a result proxy, Row objects): more than the lookup itself. These reads
are single statements (SQLite: each its own snapshot in WAL mode; PostgreSQL:
one statement, rolled back when the connection returns to the pool), so they run
on ``engine.raw_connection()`` (the same pool, with its pre-ping) and a driver
cursor. A driver error is raised as the ``sqlalchemy.exc.DBAPIError`` subclass
SQLAlchemy itself would raise, and a lost connection is invalidated, so the
fault handling (faults.py: 503 on a database outage) sees what it always saw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ociregistry.metadata import schema as t
from ociregistry.metadata.prepared import Prepared
from ociregistry.metadata.tag_list_cache import TagListCache


class Statement(Prepared):
    """A statement compiled once for the engine's dialect, run on a driver cursor."""

    def __init__(self, statement: sa.Executable, engine: Engine) -> None:
        super().__init__(statement, engine.dialect)
        self.engine = engine

    def first(self, **params: Any) -> tuple | None:
        """The first row, or None."""
        def work(cursor: Any) -> tuple | None:
            cursor.execute(self.sql, self.args(params))
            return cursor.fetchone()

        return run(self.engine, work, self.sql)


def tags_page(engine: Engine, repository: Statement, page: Statement, name: str,
              last: str, n: int | None) -> list[str] | None:
    """A page of a repository's tags (None: no such repository), both statements on one
    pooled connection, the names read straight from the cursor (no Row per tag)."""
    def work(cursor: Any) -> list[str] | None:
        cursor.execute(repository.sql, repository.args({"name": name}))
        row = cursor.fetchone()
        if row is None:
            return None
        cursor.execute(page.sql, page.args({"repo": row[0], "last": last, "n": n}))
        return [tag for tag, in cursor]

    return run(engine, work, page.sql)


def tags_json(engine: Engine, repository: Statement, page: Statement, name: str,
              last: str, n: int | None, cache: TagListCache | None = None
              ) -> tuple[str, str | None, bool] | None:
    """A page of a repository's tags as a JSON array (text), its last tag, and whether
    more tags follow it; None: no such repository. The database builds the array: one row
    whatever the page holds, no Python string or tuple per tag. With a ``cache``
    (tag_list_cache.py), a page built at the repository's current ``tags_version`` is
    served again without being rebuilt; ``repository`` then reads (id, created_at,
    tags_version)."""
    def work(cursor: Any) -> tuple[str, str | None, bool] | None:
        cursor.execute(repository.sql, repository.args({"name": name}))
        row = cursor.fetchone()
        if row is None:
            return None
        if cache is not None:
            hit = cache.get((row[0], row[1]), row[2], (n, last))
            if hit is not None:
                return hit
        cursor.execute(page.sql, page.args({"repo": row[0], "last": last, "n": n}))
        array, last_tag, more, version = cursor.fetchone()
        result = array, last_tag, bool(more)
        if cache is not None:  # the version this statement's own snapshot held
            cache.put((row[0], row[1]), version, (n, last), result)
        return result

    return run(engine, work, page.sql)


def tags_json_statement(dialect: str) -> sa.TextClause:
    """``tags_json``'s page: the array of at most ``n`` names after ``last`` in byte
    order (the column's collation), the last of them, and whether a name follows it.

    The innermost query is the one ``tags_page`` runs (covering index, ordered,
    limited); a subquery with a LIMIT is not flattened into the aggregate, so
    SQLite aggregates its rows in their order (tests/unit/test_tags_json.py
    inserts in reverse order to check). PostgreSQL orders inside the aggregate.
    """
    if dialect == "sqlite":
        agg, text, last = "json_group_array(name)", "arr", "json_extract(arr, '$[#-1]')"
    else:  # json_agg is NULL over no rows; ::text keeps the driver from parsing it
        agg, text, last = "json_agg(name ORDER BY name)", "COALESCE(arr::text, '[]')", "arr->>-1"
    # The last name from the array: max(name) would compare and copy every name again.
    # The repository's tags_version too: read in the same snapshot as the page, it is
    # what the page is kept under (tag_list_cache.py).
    return sa.text(
        f"SELECT {text}, {last}, EXISTS (SELECT 1 FROM tags WHERE repository_id = :repo"
        f" AND name > {last}), (SELECT tags_version FROM repositories WHERE id = :repo)"
        f" FROM (SELECT {agg} AS arr FROM ("
        "SELECT name FROM tags WHERE repository_id = :repo AND name > :last"
        " ORDER BY name LIMIT :n) AS page) AS a"
    )


def run(engine: Engine, work: Callable[[Any], Any], sql: str) -> Any:
    """``work(cursor)`` on a pooled driver connection (``sql``: named in errors)."""
    dialect = engine.dialect
    fairy = engine.raw_connection()  # pool errors arrive as SQLAlchemy's already
    try:
        cursor = fairy.cursor()
        try:
            return work(cursor)
        finally:
            cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, fairy.dbapi_connection, None)
        if lost:
            fairy.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error,
            connection_invalidated=lost, dialect=dialect) from exc
    finally:
        fairy.close()  # back to the pool (PostgreSQL: rolled back there)


def statements() -> dict[str, sa.Executable]:
    m, r = t.manifests, t.repositories
    cols = (m.c.id, m.c.digest, m.c.media_type, m.c.payload, m.c.subject)
    by_repo = m.join(r, r.c.id == m.c.repository_id)
    return {
        "repository_id": sa.select(r.c.id).where(r.c.name == sa.bindparam("name")),
        # The tags list's head (tag_list_cache.py): what a kept page is valid for.
        "repository_tags_version": sa.select(r.c.id, r.c.created_at, r.c.tags_version)
        .where(r.c.name == sa.bindparam("name")),
        # One page of tags in byte order (the column's collation). "No limit" is
        # LIMIT -1 on SQLite and LIMIT NULL on PostgreSQL: see tags().
        "tags_page": sa.text(
            "SELECT name FROM tags WHERE repository_id = :repo AND name > :last"
            " ORDER BY name LIMIT :n"
        ),
        "manifest_by_digest": sa.select(*cols)
        .select_from(by_repo)
        .where(r.c.name == sa.bindparam("name"), m.c.digest == sa.bindparam("ref")),
        # The tag by its primary key (repository_id, name), then its manifest by id:
        # joined the other way SQLite walked every manifest of the repository and
        # every tag of each (cost grew with the repository's size).
        "manifest_by_tag": sa.select(*cols)
        .select_from(
            r.join(t.tags, t.tags.c.repository_id == r.c.id).join(
                m, m.c.id == t.tags.c.manifest_id
            )
        )
        .where(r.c.name == sa.bindparam("name"), t.tags.c.name == sa.bindparam("ref")),
        # repository_stats on a manifest insert: add the sizes of the blobs the new
        # manifest references that no other manifest of the repository does.
        "stats_lock": sa.text(
            "INSERT INTO repository_stats (repository_id, size) VALUES (:repo, 0)"
            " ON CONFLICT (repository_id) DO UPDATE SET size = repository_stats.size"
        ),
        "stats_add_manifest": sa.text(
            "INSERT INTO repository_stats (repository_id, size) VALUES (:repo, ("
            "SELECT COALESCE(SUM(b.size), 0) FROM manifest_blobs mb"
            " JOIN blobs b ON b.digest = mb.digest WHERE mb.manifest_id = :id"
            " AND NOT EXISTS (SELECT 1 FROM manifest_blobs o"
            " JOIN manifests m ON m.id = o.manifest_id WHERE o.digest = mb.digest"
            " AND m.repository_id = :repo AND o.manifest_id <> :id)))"
            " ON CONFLICT (repository_id) DO UPDATE"
            " SET size = repository_stats.size + excluded.size"
        ),
        "repository_blob_size": sa.select(t.blobs.c.size)
        .select_from(
            t.repository_blobs.join(r, r.c.id == t.repository_blobs.c.repository_id).join(
                t.blobs, t.blobs.c.digest == t.repository_blobs.c.digest
            )
        )
        .where(
            r.c.name == sa.bindparam("name"),
            t.repository_blobs.c.digest == sa.bindparam("digest"),
        ),
    }
