"""SQL statements per /api/v1 list request: a small constant, whatever the data or page size.

In-process registries (Flask test client over a real runtime and SQLite index)
filled directly as bench/api_scale.py fills its index, one small and one ten
times larger; every statement the engine runs during a request is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bench.api_scale import BIG, fill
from tests.auth.conftest import Registry, build
from tests.auth.support import RULES, basic

MAX_STATEMENTS = 6  # authentication, rate limit, the listing's statements
LISTINGS = [
    "/api/v1/repositories?sort=name&limit={n}",
    "/api/v1/repositories?sort=pushed&limit={n}",
    "/api/v1/repositories?sort=size&limit={n}",
    "/api/v1/repositories?q=app&glob=team1*&limit={n}",
    f"/api/v1/repositories/{BIG}/tags?sort=name&limit={{n}}",
    f"/api/v1/repositories/{BIG}/tags?sort=pushed&limit={{n}}",
    f"/api/v1/repositories/{BIG}/tags?glob=v0.*&limit={{n}}",
    "/api/v1/search?q=app&limit={n}",
    "/api/v1/namespaces/team1/usage?n={n}",
]


@contextmanager
def counting(registry: Registry) -> Iterator[list[str]]:
    statements: list[str] = []
    engine = registry.runtime.metadata.engine

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Registry]:
    made = {}
    for size, (repos, tags) in {"small": (6, 10), "large": (60, 500)}.items():
        # alice: the test rules (team-a/**, users/${user}/**, public/**) and these.
        rules = [*RULES, {"users": ["alice"], "repositories": ["team1/**", BIG],
                          "actions": ["pull"]}]
        registry = build(Path(tmp_path_factory.mktemp(size)), "basic", auth={"rules": rules})
        fill(registry.runtime.metadata, repos, tags, big_manifests=5)
        made[size] = registry
    return made


def statements(registry: Registry, url: str, user: str) -> list[str]:
    headers = basic(user)
    registry.get(url, headers=headers)  # warm: the password check is cached after this
    with counting(registry) as seen:
        response = registry.get(url, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return seen


@pytest.mark.parametrize("user", ["root", "alice"])  # an admin; a user with rules
@pytest.mark.parametrize("listing", LISTINGS)
def test_statements_per_list_request_do_not_grow(registries: dict[str, Registry], listing: str,
                                                 user: str) -> None:
    counts = {}
    for size, registry in registries.items():
        for n in (5, 200):
            counts[size, n] = len(statements(registry, listing.format(n=n), user))
    assert len(set(counts.values())) == 1, counts
    assert counts["large", 200] <= MAX_STATEMENTS, counts


def test_rules_filter_in_the_database(registries: dict[str, Registry]) -> None:
    """A user's rules (literal prefixes) become a condition of the listing's own
    statement: no statement reads every repository name to filter them in Python."""
    seen = statements(registries["large"], "/api/v1/repositories?limit=5", "alice")
    unbounded = [s for s in seen if "FROM repositories" in s and "LIMIT" not in s.upper()
                 and "count(" not in s]
    assert not unbounded, unbounded
