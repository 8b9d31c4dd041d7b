"""Access rules: who may do what to which repositories. No Flask here.

A rule names principals (users, groups, ``anonymous``, or every signed-in user
with the user ``*``), repository patterns and actions. Rules only grant:
what a caller may do is the union of every rule that names it.

Patterns are globs over repository names: ``*`` matches within one path
component (never a ``/``), ``**`` matches anything including ``/``, ``?`` one
character other than ``/``, and ``${user}`` stands for the caller's user name
(``users/${user}/**`` gives everyone a namespace of their own).

Robot accounts (auth/robots.py) are users named ``robot$NAME``, members of the
implicit group ``robots``. A rule's ``admin`` action never applies to a robot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

PULL, PUSH, DELETE, ADMIN = "pull", "push", "delete", "admin"
REPOSITORY_ACTIONS = frozenset({PULL, PUSH, DELETE})
ANONYMOUS = "anonymous"
EVERY_USER = "*"
ROBOT_PREFIX = "robot$"  # user names of robot accounts (never looked up in htpasswd)
ROBOTS_GROUP = "robots"  # the implicit group of every robot


def is_robot(user: str | None) -> bool:
    return user is not None and user.startswith(ROBOT_PREFIX)


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_match(pattern: str, name: str, user: str | None = None) -> bool:
    """True when the repository ``name`` matches ``pattern``."""
    if "${user}" in pattern:
        if not user:
            return False  # a per-user pattern never matches an anonymous caller
        # The user name is a literal inside the pattern, never a glob.
        parts = pattern.split("${user}")
        regex = re.escape(user).join(_compile(part).pattern for part in parts)
        return re.fullmatch(regex, name, re.DOTALL) is not None
    return _compile(pattern).fullmatch(name) is not None


@dataclass(frozen=True)
class Rule:
    repositories: tuple[str, ...] = ("**",)
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    anonymous: bool = False
    actions: frozenset[str] = frozenset()

    def applies_to(self, user: str | None, groups: frozenset[str]) -> bool:
        if user is None:
            return self.anonymous or ANONYMOUS in self.users
        return (
            user in self.users
            or EVERY_USER in self.users
            or bool(self.groups & groups)
        )


@dataclass
class AccessRules:
    """The rules of a registry, evaluated for one caller at a time."""

    rules: list[Rule] = field(default_factory=list)
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls,
        rules: Iterable[Mapping[str, object]],
        groups: Mapping[str, Sequence[str]] | None = None,
    ) -> AccessRules:
        built = []
        for raw in rules:
            actions = set(raw.get("actions") or [])  # type: ignore[arg-type]
            if "*" in actions:
                actions |= REPOSITORY_ACTIONS
                actions.discard("*")
            built.append(
                Rule(
                    repositories=tuple(raw.get("repositories") or ("**",)),  # type: ignore[arg-type]
                    users=frozenset(raw.get("users") or ()),  # type: ignore[arg-type]
                    groups=frozenset(raw.get("groups") or ()),  # type: ignore[arg-type]
                    anonymous=bool(raw.get("anonymous", False)),
                    actions=frozenset(actions),
                )
            )
        return cls(built, {g: frozenset(m) for g, m in (groups or {}).items()})

    def groups_of(self, user: str | None) -> frozenset[str]:
        if user is None:
            return frozenset()
        groups = frozenset(g for g, members in self.groups.items() if user in members)
        return groups | {ROBOTS_GROUP} if is_robot(user) else groups

    def _rules_for(self, user: str | None) -> list[Rule]:
        groups = self.groups_of(user)
        return [rule for rule in self.rules if rule.applies_to(user, groups)]

    def applies_to_anyone(self, user: str | None) -> bool:
        """True when at least one rule names this caller."""
        return bool(self._rules_for(user))

    def is_admin(self, user: str | None) -> bool:
        if is_robot(user):
            return False
        return any(ADMIN in rule.actions for rule in self._rules_for(user))

    def allowed_actions(self, user: str | None, repository: str) -> frozenset[str]:
        """The repository actions (pull, push, delete) ``user`` has on ``repository``.

        ``None`` is the anonymous caller. An admin has every action everywhere.
        """
        granted: set[str] = set()
        robot = is_robot(user)
        for rule in self._rules_for(user):
            if ADMIN in rule.actions and not robot:
                return REPOSITORY_ACTIONS
            if rule.actions - granted and any(
                glob_match(pattern, repository, user) for pattern in rule.repositories
            ):
                granted |= rule.actions & REPOSITORY_ACTIONS
        return frozenset(granted)

    def allows(self, user: str | None, repository: str, action: str) -> bool:
        return action in self.allowed_actions(user, repository)

    def pull_filter(self, user: str | None) -> PatternFilter:
        """A predicate for catalog filtering, with the caller's rules looked up once."""
        rules = self._rules_for(user)
        if any(ADMIN in rule.actions for rule in rules) and not is_robot(user):
            return PatternFilter(("**",), user)
        patterns = [p for rule in rules if PULL in rule.actions for p in rule.repositories]
        return PatternFilter(tuple(dict.fromkeys(patterns)), user)


@dataclass(frozen=True)
class PatternFilter:
    """Names matching any of ``patterns`` (for ``user``): a predicate that also tells
    listings its patterns, so they can filter in the database (core/catalog.py)."""

    patterns: tuple[str, ...]
    user: str | None

    def __call__(self, name: str) -> bool:
        return any(glob_match(p, name, self.user) for p in self.patterns)

    def literal(self, pattern: str) -> str | None:
        """The pattern with ``${user}`` filled in; None when it cannot match this caller."""
        if "${user}" not in pattern:
            return pattern
        return pattern.replace("${user}", self.user) if self.user else None
