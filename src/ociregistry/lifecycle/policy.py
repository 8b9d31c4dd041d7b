"""Retention policies: what they select and what they keep (pydantic, no I/O).

A policy selects repositories (globs: ``*`` within a path component, ``**``
across) and, in them, tags (globs or regular expressions, include and exclude),
untagged manifests (``untagged: true``) and artifact types. It keeps what at
least one of its ``keep`` rules keeps (rules OR); a rule keeps a tag when every
condition it states holds (conditions AND). What is selected and kept by no
rule goes. Policies come from the configuration file or the management API.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ociregistry.auth.rules import glob_match
from ociregistry.lifecycle.durations import parse_duration

POLICY_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
CONDITIONS = ("tags", "latest_pushed", "latest_pulled", "pushed_within", "pulled_within",
              "always")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


class KeepRule(_Model):
    """Keep a tag (or an untagged manifest) when every condition given here holds."""

    tags: list[str] = Field(
        [], description="only tags matching one of these (the policy's tag_match syntax); "
                        "a rule with tags never keeps an untagged manifest")
    latest_pushed: int | None = Field(
        None, ge=0, description="among the N most recently pushed in its repository")
    latest_pulled: int | None = Field(
        None, ge=0, description="among the N most recently pulled (never pulled: not ranked)")
    pushed_within: str | None = Field(None, description="pushed within this duration (2w)")
    pulled_within: str | None = Field(None, description="pulled within this duration (30d)")
    always: bool = Field(False, description="keep whatever else the rule says holds")

    _check = field_validator("pushed_within", "pulled_within")(_duration)

    @model_validator(mode="after")
    def _says_something(self) -> KeepRule:
        if not (self.tags or self.always or any(
                getattr(self, c) is not None for c in CONDITIONS[1:5])):
            raise ValueError("a keep rule needs at least one condition")
        return self

    def describe(self) -> str:
        parts = [f"tags {','.join(self.tags)}"] if self.tags else []
        for cond in CONDITIONS[1:5]:
            value = getattr(self, cond)
            if value is not None:
                parts.append(f"{cond} {value}")
        if self.always:
            parts.append("always")
        return " and ".join(parts)


class RetentionPolicy(_Model):
    name: str = Field(..., pattern=POLICY_NAME)
    enabled: bool = Field(True, description="false: never scheduled, never in a run of all")
    description: str = Field("", max_length=500)
    repositories: list[str] = Field(["**"], min_length=1, description="repository globs")
    exclude_repositories: list[str] = []
    tag_match: Literal["glob", "regex"] = "glob"
    tags: list[str] = Field(["*"], description="tags the policy may delete (include)")
    exclude_tags: list[str] = Field([], description="tags it never deletes")
    untagged: bool = Field(False, description="also delete untagged manifests it selects")
    artifact_types: list[str] = Field(
        [], description="only manifests of these artifact types (an image: its config's "
                        "media type); empty: any")
    keep: list[KeepRule] = Field(..., min_length=1, max_length=32)
    schedule: str = Field("", description="cron expression (UTC); empty: on demand only")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @model_validator(mode="after")
    def _patterns(self) -> RetentionPolicy:
        if self.tag_match == "regex":
            for pattern in [*self.tags, *self.exclude_tags,
                            *(p for rule in self.keep for p in rule.tags)]:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc
        return self

    # -- matching ---------------------------------------------------------------
    def selects_repository(self, name: str) -> bool:
        return (any(glob_match(p, name) for p in self.repositories)
                and not any(glob_match(p, name) for p in self.exclude_repositories))

    def tag_matcher(self, patterns: list[str]) -> Callable[[str], bool]:
        """Whether a tag matches one of ``patterns`` (a regex must match the whole tag)."""
        if self.tag_match == "regex":
            compiled = [re.compile(p) for p in patterns]
            return lambda tag: any(c.fullmatch(tag) for c in compiled)
        regexes = [re.compile(fnmatch.translate(p)) for p in patterns]
        return lambda tag: any(r.match(tag) for r in regexes)


def check_cron(value: str) -> str:
    """``value`` when it is empty or a valid cron expression (a pydantic validator's body)."""
    if value:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r}")
    return value
