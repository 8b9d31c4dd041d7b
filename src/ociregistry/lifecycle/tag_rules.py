"""Immutable and protected tags: which rule, if any, refuses a tag change.

A rule selects tags by a repository glob and a tag glob (``v*.*.*`` in
``prod/**``). An *immutable* tag, once pushed, is never moved nor deleted; a push
of the digest it already names changes nothing and is accepted. A *protected*
tag may be pushed, moved or deleted only by the rule's users and groups (robots
are users ``robot$NAME`` in the group ``robots``); system work run from the
command line is not a caller and passes. Rules come from the configuration file
(read-only) and from the index (managed at run time, every instance sees a
change at once: they are read in the transaction that changes the tag).

``TagRules.is_immutable(repository, tag)`` is the predicate retention uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from ociregistry import metrics
from ociregistry.auth.rules import AccessRules, glob_match
from ociregistry.core.actor import Actor
from ociregistry.core.errors import Denied
from ociregistry.metadata import tag_rule_queries as q
from ociregistry.metadata.store import MetadataStore

IMMUTABLE, PROTECTED = "immutable", "protected"
KINDS = (IMMUTABLE, PROTECTED)


@dataclass(frozen=True)
class TagRule:
    kind: str
    repositories: str
    tags: str
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    description: str = ""
    id: int | None = None  # None: from the configuration file
    source: str = ""  # "config:immutable[0]" or "api:3"
    created_by: str = ""
    created_at: float | None = None

    def matches(self, repository: str, tag: str) -> bool:
        # Tags hold no "/", so a glob's "*" is any run of characters there.
        return glob_match(self.tags, tag) and glob_match(self.repositories, repository)

    @property
    def label(self) -> str:
        return f'rule {self.source}: tags "{self.tags}" in "{self.repositories}"'

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "kind": self.kind,
                "repositories": self.repositories, "tags": self.tags,
                "users": list(self.users), "groups": list(self.groups),
                "description": self.description, "created_by": self.created_by,
                "created_at": self.created_at, "read_only": self.id is None}


class TagRuleError(ValueError):
    """A rule that cannot be stored (bad kind or pattern)."""


@dataclass
class TagRules:
    store: MetadataStore
    configured: list[TagRule] = field(default_factory=list)
    groups: dict[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, store: MetadataStore, tags: Any, groups: dict) -> TagRules:
        configured = [
            TagRule(kind, r.repositories, r.tags, tuple(r.users), tuple(r.groups),
                    r.description, source=f"config:{kind}[{i}]")
            for kind in KINDS for i, r in enumerate(getattr(tags, kind))
        ]
        return cls(store, configured, dict(groups))

    def __post_init__(self) -> None:
        self._access = AccessRules.from_config([], self.groups)
        # The stored rules' rows last read and what they parsed to (see rules()).
        self._parsed: tuple[tuple[tuple[Any, ...], ...], tuple[TagRule, ...]] | None = None

    # -- reading ---------------------------------------------------------------------
    def rules(self, conn: Connection | None = None) -> list[TagRule]:
        if conn is None:
            with self.store.read() as conn:
                return self.rules(conn)
        # Read in the caller's transaction every time (exact across workers and
        # instances); only parsing them is skipped while the rows are unchanged.
        raw = q.raw_rules(conn)
        cached = self._parsed
        if cached is not None and cached[0] == raw:
            return list(cached[1])  # a copy: a caller may change its list
        stored = [TagRule(row["kind"], row["repositories"], row["tags"], tuple(row["users"]),
                          tuple(row["groups"]), row["description"], row["id"],
                          f"api:{row['id']}", row["created_by"], row["created_at"])
                  for row in q.parse_raw(raw)]
        rules = [*self.configured, *stored]
        self._parsed = (raw, tuple(rules))
        return rules

    def matching(self, repository: str, tag: str,
                 conn: Connection | None = None) -> list[TagRule]:
        return [rule for rule in self.rules(conn) if rule.matches(repository, tag)]

    def is_immutable(self, repository: str, tag: str, conn: Connection | None = None) -> bool:
        """True when an immutable rule covers the tag: retention must never delete it."""
        return any(rule.kind == IMMUTABLE for rule in self.matching(repository, tag, conn))

    def is_protected(self, repository: str, tag: str, conn: Connection | None = None) -> bool:
        return any(rule.kind == PROTECTED for rule in self.matching(repository, tag, conn))

    # -- deciding --------------------------------------------------------------------
    def check(self, conn: Connection, repository: str | Callable[[], str], tag: str,
              action: str, previous: str | None, actor: Actor) -> None:
        """Raise ``Denied`` when a rule refuses ``action`` (push, move, delete,
        restore) on the tag, which names ``previous`` now (None: no such tag yet).
        ``repository`` may be a function: called only when there are rules."""
        rules = self.rules(conn)
        if not rules:
            return
        if callable(repository):
            repository = repository()
        for rule in rules:
            if not rule.matches(repository, tag):
                continue
            if rule.kind == IMMUTABLE and previous is not None:
                self._refuse(rule, repository, tag, action,
                             f"tag {tag} in {repository} is immutable ({rule.label}); it "
                             "cannot be moved or deleted: push a new tag instead")
            if rule.kind == PROTECTED and not self._may_change(rule, actor):
                self._refuse(rule, repository, tag, action,
                             f"tag {tag} in {repository} is protected ({rule.label}); "
                             f"{actor.label} may not push, move or delete it")

    def _may_change(self, rule: TagRule, actor: Actor) -> bool:
        if actor.kind == "system":
            return True
        if actor.name is None:
            return False
        if actor.name in rule.users or "*" in rule.users:
            return True
        return bool(self._access.groups_of(actor.name) & set(rule.groups))

    @staticmethod
    def _refuse(rule: TagRule, repository: str, tag: str, action: str, message: str) -> None:
        metrics.record_tag_refusal(rule.source, rule.kind, action)
        raise Denied(message, {"rule": rule.as_dict(), "repository": repository, "tag": tag,
                               "action": action})

    # -- managing (API, UI) ----------------------------------------------------------
    def add(self, kind: str, repositories: str, tags: str, users: Sequence[str] = (),
            groups: Sequence[str] = (), description: str = "", created_by: str = "") -> TagRule:
        if kind not in KINDS:
            raise TagRuleError(f"kind must be one of {', '.join(KINDS)}")
        for name, value, limit in (("repositories", repositories, 512), ("tags", tags, 255)):
            if not value or len(value) > limit or any(c.isspace() for c in value):
                raise TagRuleError(f"{name} must be a glob of 1 to {limit} characters, "
                                   "without spaces")
        if kind == IMMUTABLE and (users or groups):
            raise TagRuleError("an immutable rule names no users or groups: nobody may "
                               "move or delete its tags")
        with self.store.write() as conn:
            rule_id = q.add_rule(conn, kind, repositories, tags, list(users), list(groups),
                                 description[:255], created_by[:255])
        rule = self.get(rule_id)
        assert rule is not None
        return rule

    def get(self, rule_id: int) -> TagRule | None:
        return next((r for r in self.rules() if r.id == rule_id), None)

    def delete(self, rule_id: int) -> bool:
        with self.store.write() as conn:
            return q.delete_rule(conn, rule_id)
