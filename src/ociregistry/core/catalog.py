"""The management API's read services: keyset pages of repositories and tags,
namespace usage, search. No Flask here; the web UI and /api/v1 share these
and core/browse.py (manifest detail, the deletes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ociregistry.core.browse import BrowseService, TagView
from ociregistry.core.cursors import BadCursor, CursorCodec
from ociregistry.core.errors import NameUnknown
from ociregistry.core.names import validate_name
from ociregistry.metadata import browse_queries as bq
from ociregistry.metadata import catalog_queries as q

T = TypeVar("T")
MAX_LIMIT = 1000
REPOSITORY_SORTS = ("name", "pushed", "size")
TAG_SORTS = ("name", "pushed", "pulled")  # pulled: the pull statistics' last pull


@dataclass
class KeysetPage(Generic[T]):
    items: list[T]
    next_cursor: str | None
    prev_cursor: str | None


_Trimmed = tuple[list[Any], str | None, str | None]  # rows, next cursor, previous cursor


def name_scope(visible: Callable[[str], bool] | None) -> q.NameScope | None:
    """The caller's visibility as a database condition, when its rules' globs allow it.

    Rule patterns that are a literal name or a literal prefix followed by ``**``
    (``${user}`` filled in) translate exactly; None when some pattern does not
    (then the names are filtered here, in Python).
    """
    patterns = getattr(visible, "patterns", None)
    if patterns is None:
        return None
    user = getattr(visible, "user", None)
    scope = q.NameScope([], [])
    for pattern in patterns:
        body, anything = (pattern[:-2], True) if pattern.endswith("**") else (pattern, False)
        parts = body.split("${user}")
        if any("*" in part or "?" in part for part in parts):
            return None
        if len(parts) > 1 and not user:
            continue  # a per-user pattern never matches an anonymous caller
        literal = (user or "").join(parts)
        (scope.prefixes if anything else scope.exact).append(literal)
    return scope


def _listing(kind: str, **identity: Any) -> str:
    """What a cursor is bound to: the listing's kind, sort, order and filters."""
    return kind + json.dumps(identity, sort_keys=True)


class CatalogService:
    def __init__(self, browse: BrowseService, cursors: CursorCodec) -> None:
        self.browse = browse
        self.db = browse.db
        self.cursors = cursors

    # -- paging -----------------------------------------------------------------
    def _start(self, listing: str, cursor: str | None) -> q.Keyset | None:
        if not cursor:
            return None
        position = self.cursors.decode(listing, cursor)
        name, backwards = position.get("n"), position.get("b")
        if not isinstance(name, str) or not isinstance(backwards, bool):
            raise BadCursor("malformed cursor")
        key = position.get("k")
        if key is not None and not isinstance(key, int | float) or isinstance(key, bool):
            raise BadCursor("malformed cursor")
        return q.Keyset(key, name, backwards)

    def _page(self, listing: str, rows: list[Any], start: q.Keyset | None, limit: int,
              key: Callable[[Any], Any], name: Callable[[Any], str]) -> _Trimmed:
        """Trim the ``limit + 1`` rows fetched and make the cursors around them."""
        backwards = start is not None and start.backwards
        more = len(rows) > limit
        if more:
            rows = rows[1:] if backwards else rows[:limit]
        if not rows:
            return rows, None, None
        first, last = rows[0], rows[-1]
        has_next = more if not backwards else True
        has_prev = start is not None if not backwards else more
        next_cursor = (self.cursors.encode(listing, {"k": key(last), "n": name(last), "b": False})
                       if has_next else None)
        prev_cursor = (self.cursors.encode(listing, {"k": key(first), "n": name(first), "b": True})
                       if has_prev else None)
        return rows, next_cursor, prev_cursor

    # -- repositories -----------------------------------------------------------
    def repositories(self, *, contains: str = "", glob: str = "", sort: str = "name",
                     descending: bool = False, limit: int = 100, cursor: str | None = None,
                     visible: Callable[[str], bool] | None = None,
                     ) -> KeysetPage[bq.RepositorySummary]:
        """``visible`` None: every repository; otherwise those it accepts."""
        limit = min(max(limit, 1), MAX_LIMIT)
        contains = contains.strip().lower()
        listing = _listing("repositories", q=contains, glob=glob, sort=sort, desc=descending)
        start = self._start(listing, cursor)
        scope, names = self._visibility(visible, contains)
        rows = q.repositories_after(self.db, contains=contains, glob=glob, sort=sort,
                                    descending=descending, keyset=start, limit=limit + 1,
                                    names=names, scope=scope)
        keys = {"name": None, "size": lambda r: r.size, "pushed": lambda r: r.last_push}
        key = keys[sort] or (lambda r: None)
        items, after, before = self._page(listing, rows, start, limit, key, lambda r: r.name)
        return KeysetPage(items, after, before)

    def _visibility(self, visible: Callable[[str], bool] | None, contains: str = "",
                    ) -> tuple[q.NameScope | None, list[str] | None]:
        """What the caller may see: a condition for the database, else a list of names."""
        if visible is None:
            return None, None
        scope = name_scope(visible)
        if scope is not None:
            return scope, None
        return None, [n for n in bq.repository_names(self.db, contains) if visible(n)]

    def count_repositories(self, contains: str = "",
                           visible: Callable[[str], bool] | None = None) -> int:
        contains = contains.strip().lower()
        scope, names = self._visibility(visible, contains)
        return q.count_repositories(self.db, contains, names, scope)

    def count_tags(self, name: str, contains: str = "") -> int:
        validate_name(name)
        return q.count_tags(self.db, name, contains)

    def repository(self, name: str) -> bq.RepositorySummary:
        return self.browse.repository(name)

    def namespace_usage(self, prefix: str,
                        visible: Callable[[str], bool] | None = None) -> q.NamespaceUsage:
        validate_name(prefix)
        scope, names = self._visibility(visible, prefix)
        return q.namespace_usage(self.db, prefix, names, scope)

    # -- tags -------------------------------------------------------------------
    def tags(self, name: str, *, exact: str = "", prefix: str = "", glob: str = "",
             contains: str = "", sort: str = "name", descending: bool = False,
             limit: int = 100, cursor: str | None = None) -> KeysetPage[TagView]:
        validate_name(name)
        limit = min(max(limit, 1), MAX_LIMIT)
        identity: dict[str, Any] = {"contains": contains} if contains else {}
        listing = _listing("tags", repo=name, name=exact, prefix=prefix, glob=glob, sort=sort,
                           desc=descending, **identity)
        start = self._start(listing, cursor)
        rows = q.tags_after(self.db, name, exact=exact, prefix=prefix, glob=glob,
                            contains=contains, sort=sort, descending=descending, keyset=start,
                            limit=limit + 1)
        if rows is None:
            raise NameUnknown(detail={"name": name})
        keys = {"name": lambda r: None, "pushed": lambda r: r.pushed_at,
                "pulled": lambda r: r.last_pulled_at or 0.0}
        key = keys[sort]
        rows, after, before = self._page(listing, rows, start, limit, key, lambda r: r.name)
        sizes = bq.content_sizes(self.db, [row.manifest_id for row in rows])
        return KeysetPage([self.browse.tag_view(row, sizes) for row in rows], after, before)

    # -- search -----------------------------------------------------------------
    def search(self, text: str, limit: int = 50,
               visible: Callable[[str], bool] | None = None) -> list[q.SearchHit]:
        limit = min(max(limit, 1), MAX_LIMIT)
        scope, names = self._visibility(visible)
        return q.search(self.db, text, limit, names, scope)
