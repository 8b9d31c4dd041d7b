"""Tag rules, table-driven: which rule matches which tag, who may change a protected
tag, and what an immutable rule refuses (on a real SQLite index, no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ociregistry.config import TagSettings
from ociregistry.core.actor import SYSTEM, Actor
from ociregistry.core.errors import Denied
from ociregistry.lifecycle.tag_rules import TagRuleError, TagRules
from ociregistry.metadata.store import MetadataStore

SETTINGS = TagSettings.model_validate({
    "immutable": [{"repositories": "prod/**", "tags": "v*.*.*"},
                  {"repositories": "*", "tags": "release-?"}],
    "protected": [{"repositories": "team-a/**", "tags": "latest", "users": ["alice"],
                   "groups": ["maintainers"]},
                  {"repositories": "ci/*", "tags": "main", "groups": ["robots"]}],
})
GROUPS = {"maintainers": ["carol"]}


@pytest.fixture
def rules(tmp_path: Path) -> TagRules:
    store = MetadataStore(f"sqlite:///{tmp_path / 'r.db'}")
    store.create_schema()
    return TagRules.from_settings(store, SETTINGS, GROUPS)


@pytest.mark.parametrize("repository, tag, immutable", [
    ("prod/app", "v1.2.3", True),
    ("prod/team/app", "v10.0.0-rc1", True),  # ** spans components; * any run in a tag
    ("prod/app", "v1.2", False),
    ("prod", "v1.2.3", False),  # prod/** needs something below prod/
    ("staging/app", "v1.2.3", False),
    ("app", "release-1", True),
    ("app", "release-10", False),  # ? is one character
    ("team/app", "release-1", False),  # * never crosses a /
])
def test_immutable_matching(rules, repository, tag, immutable):
    assert rules.is_immutable(repository, tag) is immutable


def _check(rules: TagRules, repository: str, tag: str, action: str, previous: str | None,
           actor: Actor) -> str | None:
    with rules.store.write() as conn:
        try:
            rules.check(conn, repository, tag, action, previous, actor)
        except Denied as exc:
            return exc.message
    return None


ALICE, BOB, CAROL = Actor("user", "alice"), Actor("user", "bob"), Actor("user", "carol")
CI, ANON = Actor("robot", "robot$ci"), Actor("anonymous")


@pytest.mark.parametrize("repository, tag, action, previous, actor, refused", [
    # immutable: creating is a push like any other; moving and deleting are refused
    ("prod/app", "v1.0.0", "push", None, BOB, None),
    ("prod/app", "v1.0.0", "move", "sha256:a", BOB, "is immutable"),
    ("prod/app", "v1.0.0", "delete", "sha256:a", ALICE, "is immutable"),
    ("prod/app", "v1.0.0", "restore", "sha256:a", SYSTEM, "is immutable"),  # even the CLI
    ("prod/app", "v1.0.0", "restore", None, BOB, None),
    # protected: by user, by group, robots by their group; nobody else, creation included
    ("team-a/x", "latest", "push", None, ALICE, None),
    ("team-a/x", "latest", "move", "sha256:a", CAROL, None),
    ("team-a/x", "latest", "push", None, BOB, "bob may not"),
    ("team-a/x", "latest", "delete", "sha256:a", ANON, "anonymous may not"),
    ("team-a/x", "latest", "delete", "sha256:a", CI, "robot$ci may not"),
    ("ci/app", "main", "move", "sha256:a", CI, None),
    ("ci/app", "main", "move", "sha256:a", ALICE, "alice may not"),
    ("team-a/x", "latest", "delete", "sha256:a", SYSTEM, None),  # command-line work
    ("team-a/x", "other", "delete", "sha256:a", BOB, None),
])
def test_who_may_change_what(rules, repository, tag, action, previous, actor, refused):
    message = _check(rules, repository, tag, action, previous, actor)
    if refused is None:
        assert message is None
    else:
        assert message is not None and refused in message
        assert f"tag {tag} in {repository}" in message and "(rule config:" in message


def test_stored_rules_join_the_configured_ones(rules):
    added = rules.add("protected", "apps/**", "stable", users=["dave"], created_by="root")
    assert added.source == f"api:{added.id}"
    assert _check(rules, "apps/x", "stable", "push", None, BOB) is not None
    assert _check(rules, "apps/x", "stable", "push", None, Actor("user", "dave")) is None
    assert [r.source for r in rules.rules()][-1] == added.source
    assert rules.delete(added.id) and not rules.delete(added.id)
    assert _check(rules, "apps/x", "stable", "push", None, BOB) is None


@pytest.mark.parametrize("kind, repositories, tags, users", [
    ("sticky", "**", "x", []),
    ("immutable", "**", "", []),
    ("immutable", "a b", "x", []),
    ("immutable", "**", "x", ["alice"]),
])
def test_bad_rules_are_refused(rules, kind, repositories, tags, users):
    with pytest.raises(TagRuleError):
        rules.add(kind, repositories, tags, users=users)
