"""Access rules turned into SQL (core.catalog.name_scope) select exactly the names the
rules' own predicate accepts, on the database's byte-wise comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ociregistry.auth.rules import AccessRules
from ociregistry.core.catalog import name_scope
from ociregistry.metadata import schema as t
from ociregistry.metadata.catalog_queries import scope_condition
from ociregistry.metadata.store import MetadataStore

NAMES = ["team", "team/app", "team/app/sub", "teamx/app", "team-a/app", "users/bob/app",
         "users/bob", "users/bobby/app", "users/alice/x", "public/base", "a/b", "z/~"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MetadataStore:
    db = MetadataStore("sqlite:///" + str(Path(tmp_path_factory.mktemp("scope")) / "r.db"))
    db.create_schema()
    with db.write() as conn:
        conn.execute(t.repositories.insert(),
                     [{"name": n, "created_at": 0.0} for n in NAMES])
    return db


@pytest.mark.parametrize("patterns,user", [
    (["team/**"], "alice"),
    (["team/app", "public/**"], "alice"),
    (["users/${user}/**"], "bob"),
    (["users/${user}/**"], "Bob"),  # LIKE would match users/bob/ on SQLite; bytes do not
    (["users/${user}/**"], None),
    (["team**"], "x"),
    (["**"], "x"),
])
def test_scope_selects_what_the_rules_accept(store: MetadataStore, patterns: list[str],
                                             user: str | None) -> None:
    rules = AccessRules.from_config([{"users": ["*"], "anonymous": True,
                                      "repositories": patterns, "actions": ["pull"]}])
    visible = rules.pull_filter(user)
    scope = name_scope(visible)
    assert scope is not None
    r = t.repositories
    with store.read() as conn:
        selected = set(conn.execute(sa.select(r.c.name).where(
            scope_condition(r.c.name, scope))).scalars())
    assert selected == {n for n in NAMES if visible(n)}


@pytest.mark.parametrize("pattern", ["team/*", "team/**/app", "a?/**", "${user}*"])
def test_other_globs_are_left_to_python(pattern: str) -> None:
    rules = AccessRules.from_config([{"users": ["*"], "repositories": [pattern],
                                      "actions": ["pull"]}])
    assert name_scope(rules.pull_filter("alice")) is None


def test_a_plain_predicate_is_left_to_python() -> None:
    assert name_scope(lambda name: True) is None
