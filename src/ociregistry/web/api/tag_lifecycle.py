"""/api/v1: immutable and protected tag rules (admins), a tag's history and restores.

HTTP only: the views call lifecycle/tag_rules.py and lifecycle/tag_history.py,
the same services the web UI and ``ociregistry tag restore`` use.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, g

from ociregistry.lifecycle.tag_rules import KINDS, TagRuleError
from ociregistry.lifecycle.tags import TagServices
from ociregistry.web.api.blueprint import REPOSITORY_NAME, operation, query, schema
from ociregistry.web.api.problems import Problem
from ociregistry.web.api.tags import TAG_PATTERN

TAG_PATH = {"name": "tag", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": TAG_PATTERN}}
RULE_PATH = {"name": "rule_id", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}
NAMES = {"type": "array", "maxItems": 100, "items": {"type": "string", "minLength": 1,
                                                      "maxLength": 255}}
TAG_RULE = schema("TagRule", {
    "type": "object",
    "required": ["id", "source", "kind", "repositories", "tags", "users", "groups",
                 "description", "read_only"],
    "properties": {
        "id": {"type": ["integer", "null"], "description": "null: from the configuration file"},
        "source": {"type": "string", "description": "config:<kind>[i] or api:<id>; refusals "
                                                    "name it"},
        "kind": {"type": "string", "enum": list(KINDS)},
        "repositories": {"type": "string"}, "tags": {"type": "string"},
        "users": {"type": "array", "items": {"type": "string"}},
        "groups": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"}, "created_by": {"type": "string"},
        "created_at": {"type": ["number", "null"]}, "read_only": {"type": "boolean"},
    },
})
HISTORY_ENTRY = schema("TagHistoryEntry", {
    "type": "object",
    "required": ["id", "tag", "action", "digest", "previous_digest", "actor_kind", "actor_name",
                 "at"],
    "properties": {
        "id": {"type": "integer"}, "tag": {"type": "string"},
        "action": {"type": "string", "enum": ["push", "move", "delete", "restore"]},
        "digest": {"type": ["string", "null"], "description": "null: deleted"},
        "previous_digest": {"type": ["string", "null"], "description": "null: created"},
        "actor_kind": {"type": "string", "enum": ["user", "robot", "anonymous", "system"]},
        "actor_name": {"type": ["string", "null"]},
        "actor_address": {"type": ["string", "null"]},
        "request_id": {"type": ["string", "null"]},
        "at": {"type": "number", "description": "Unix time"},
    },
})
TAG_HISTORY = schema("TagHistory", {
    "type": "object", "required": ["repository", "tag", "entries", "restorable"],
    "properties": {
        "repository": {"type": "string"}, "tag": {"type": "string"},
        "entries": {"type": "array", "items": HISTORY_ENTRY},
        "restorable": {"type": "array", "description": "digests the tag can be restored to",
                       "items": {"type": "object", "required": ["digest", "last_seen_at"],
                                 "properties": {"digest": {"type": "string"},
                                                "last_seen_at": {"type": "number"},
                                                "stored": {"type": "boolean"}}}},
        "restore_window_seconds": {"type": "number"},
    },
})
RESTORED = schema("TagRestored", {
    "type": "object", "required": ["repository", "tag", "digest", "previous", "changed"],
    "properties": {"repository": {"type": "string"}, "tag": {"type": "string"},
                   "digest": {"type": "string"}, "previous": {"type": ["string", "null"]},
                   "changed": {"type": "boolean"}},
})


def _tags() -> TagServices:
    services = current_app.extensions["ociregistry"].tags
    assert services is not None
    return services


@operation("/tag-rules", "GET", summary="List immutable and protected tag rules",
           tag="tag-rules", permission="admin",
           response={"type": "object", "required": ["items"],
                     "properties": {"items": {"type": "array", "items": TAG_RULE}}},
           description="The configuration file's rules (read-only) and those added here.")
def list_tag_rules() -> dict[str, Any]:
    return {"items": [rule.as_dict() for rule in _tags().rules.rules()]}


@operation("/tag-rules", "POST", summary="Add an immutable or protected tag rule",
           tag="tag-rules", permission="admin", response=TAG_RULE, status=201,
           body={"type": "object", "required": ["kind", "tags"], "additionalProperties": False,
                 "properties": {
                     "kind": {"type": "string", "enum": list(KINDS)},
                     "repositories": {"type": "string", "minLength": 1, "maxLength": 512,
                                      "description": "glob; default **"},
                     "tags": {"type": "string", "minLength": 1, "maxLength": 255},
                     "users": NAMES, "groups": NAMES,
                     "description": {"type": "string", "maxLength": 255}}},
           description="Applies at once on every instance. A refused push or delete answers "
                       "403 DENIED naming the rule; an immutable rule takes no users or groups "
                       "(400 `bad_request`).")
def create_tag_rule(body: dict[str, Any]) -> dict[str, Any]:
    principal = getattr(g, "principal", None)
    try:
        rule = _tags().rules.add(
            body["kind"], body.get("repositories", "**"), body["tags"], body.get("users", []),
            body.get("groups", []), body.get("description", ""),
            (principal.user or "") if principal else "")
    except TagRuleError as exc:
        raise Problem("bad_request", str(exc)) from exc
    return rule.as_dict()


@operation("/tag-rules/{rule_id}", "GET", summary="One tag rule", tag="tag-rules",
           permission="admin", response=TAG_RULE, parameters=(RULE_PATH,))
def get_tag_rule(rule_id: str) -> dict[str, Any]:
    rule = _tags().rules.get(_rule_id(rule_id))
    if rule is None:
        raise Problem("not_found", f"no tag rule {rule_id}")
    return rule.as_dict()


@operation("/tag-rules/{rule_id}", "DELETE", summary="Delete a tag rule", tag="tag-rules",
           permission="admin", response=None, status=204, parameters=(RULE_PATH,),
           description="Rules from the configuration file have no id: change the file.")
def delete_tag_rule(rule_id: str) -> None:
    if not _tags().rules.delete(_rule_id(rule_id)):
        raise Problem("not_found", f"no tag rule {rule_id}")


def _rule_id(raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 2**31:
        raise Problem("invalid_parameter", "rule_id must be a positive integer",
                      parameter="rule_id")
    return int(raw)


@operation("/repositories/{name}/tags/{tag}/history", "GET", summary="A tag's history",
           tag="tags", permission="repository:pull", response=TAG_HISTORY,
           parameters=(REPOSITORY_NAME, TAG_PATH,
                       query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                       "default": 100}, "Entries per page, newest first."),
                       query("before", {"type": "integer", "minimum": 1,
                                        "maximum": 2**53}, "Entries older than this id.")),
           description="Every push, move, delete and restore of the tag (by whom, when), and "
                       "the digests it can be restored to within tags.restore_window_seconds. "
                       "A deleted tag keeps its history.")
def tag_history(name: str, tag: str, limit: int, before: int | None) -> dict[str, Any]:
    tags = _tags()
    return {"repository": name, "tag": tag,
            "entries": tags.history.entries(name, tag, limit, before),
            "restorable": tags.history.restorable(name, tag),
            "restore_window_seconds": tags.history.window}


@operation("/repositories/{name}/tag-history", "GET", summary="A repository's tag changes",
           tag="tags", permission="repository:pull",
           response={"type": "object", "required": ["repository", "entries"],
                     "properties": {"repository": {"type": "string"},
                                    "entries": {"type": "array", "items": HISTORY_ENTRY}}},
           parameters=(REPOSITORY_NAME,
                       query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                       "default": 100}, "Entries per page, newest first."),
                       query("before", {"type": "integer", "minimum": 1,
                                        "maximum": 2**53}, "Entries older than this id.")),
           description="Every tag's pushes, moves, deletes and restores: where deleted tags "
                       "are found.")
def repository_tag_history(name: str, limit: int, before: int | None) -> dict[str, Any]:
    return {"repository": name, "entries": _tags().history.entries(name, None, limit, before)}


@operation("/repositories/{name}/tags/{tag}/restore", "POST",
           summary="Restore a tag to an earlier digest", tag="tags",
           permission="repository:push", response=RESTORED, parameters=(REPOSITORY_NAME, TAG_PATH),
           body={"type": "object", "required": ["digest"], "additionalProperties": False,
                 "properties": {"digest": {"type": "string", "minLength": 1,
                                           "maxLength": 160}}},
           description="The digest must be one the tag pointed at within the restore window "
                       "(404 `manifest_not_found` otherwise). Immutable and protected tag "
                       "rules apply as to a push (403). The restore is a history entry.")
def restore_tag(name: str, tag: str, body: dict[str, Any]) -> dict[str, Any]:
    restored = _tags().history.restore(name, tag, body["digest"])
    return {"repository": restored.repository, "tag": restored.tag, "digest": restored.digest,
            "previous": restored.previous, "changed": restored.changed}
