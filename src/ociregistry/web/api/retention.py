"""/api/v1/retention: policies (CRUD), runs (dry or real, on demand) and their audit."""

from __future__ import annotations

from typing import Any

from flask import current_app
from pydantic import ValidationError

from ociregistry.core.actor import current_actor
from ociregistry.lifecycle.policy import POLICY_NAME, KeepRule, RetentionPolicy
from ociregistry.lifecycle.retention import (
    PolicyEntry,
    PolicyNotFound,
    PolicyReadOnly,
    RetentionRunning,
    RetentionService,
)
from ociregistry.web.api.blueprint import operation, query, schema
from ociregistry.web.api.problems import Problem

_STRINGS = {"type": "array", "items": {"type": "string", "maxLength": 512}, "maxItems": 64}
_DURATION = {"type": ["string", "null"], "maxLength": 32, "description": "e.g. 30m, 12h, 2d, 3w"}
KEEP_RULE = schema("RetentionKeepRule", {
    "type": "object", "additionalProperties": False,
    "description": KeepRule.__doc__,
    "properties": {
        "tags": _STRINGS,
        "latest_pushed": {"type": ["integer", "null"], "minimum": 0},
        "latest_pulled": {"type": ["integer", "null"], "minimum": 0},
        "pushed_within": _DURATION, "pulled_within": _DURATION,
        "always": {"type": "boolean"},
    },
})
POLICY_FIELDS: dict[str, Any] = {
    "enabled": {"type": "boolean"},
    "description": {"type": "string", "maxLength": 500},
    "repositories": {**_STRINGS, "minItems": 1},
    "exclude_repositories": _STRINGS,
    "tag_match": {"type": "string", "enum": ["glob", "regex"]},
    "tags": _STRINGS, "exclude_tags": _STRINGS,
    "untagged": {"type": "boolean"},
    "artifact_types": _STRINGS,
    "keep": {"type": "array", "items": KEEP_RULE, "minItems": 1, "maxItems": 32},
    "schedule": {"type": "string", "maxLength": 100, "description": "cron (UTC); empty: none"},
}
POLICY_BODY = {"type": "object", "required": ["keep"], "additionalProperties": False,
               "properties": POLICY_FIELDS}
POLICY = schema("RetentionPolicy", {
    "type": "object", "required": ["name", "source", "keep"],
    "properties": {"name": {"type": "string"},
                   "source": {"type": "string", "enum": ["config", "api", "builtin"]},
                   "updated_at": {"type": ["number", "null"]},
                   "updated_by": {"type": ["string", "null"]}, **POLICY_FIELDS},
})
DELETION = schema("RetentionDeletion", {
    "type": "object", "required": ["kind", "repository", "tag", "digest", "policy", "rule"],
    "properties": {"kind": {"type": "string", "enum": ["tag", "manifest"]},
                   "repository": {"type": "string"}, "tag": {"type": ["string", "null"]},
                   "digest": {"type": "string"}, "policy": {"type": "string"},
                   "rule": {"type": "string", "description": "why it goes"}},
})
RUN_RESULT = schema("RetentionRunResult", {
    "type": "object", "required": ["runs"],
    "properties": {"runs": {"type": "array", "items": {"type": "object", "properties": {
        "run_id": {"type": "integer"}, "policy": {"type": "string"},
        "dry_run": {"type": "boolean"}, "tags": {"type": "integer"},
        "manifests": {"type": "integer"}, "skipped": {"type": "integer"},
        "deletions": {"type": "array", "items": DELETION},
        "truncated": {"type": "boolean"}}}}},
})
RUN = schema("RetentionRun", {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "policy": {"type": "string"},
                   "dry_run": {"type": "boolean"}, "trigger": {"type": "string"},
                   "started_by": {"type": "string"}, "started_at": {"type": "number"},
                   "finished_at": {"type": ["number", "null"]}, "status": {"type": "string"},
                   "tags_deleted": {"type": "integer"}, "manifests_deleted": {"type": "integer"},
                   "skipped": {"type": "integer"}, "error": {"type": ["string", "null"]},
                   "deletions": {"type": "array", "items": {"type": "object"}}},
})
POLICY_PATH = {"name": "policy", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": POLICY_NAME}}


def _service() -> RetentionService:
    return current_app.extensions["ociregistry"].retention


def policy_json(entry: PolicyEntry) -> dict[str, Any]:
    return {**entry.policy.model_dump(), "source": entry.source,
            "updated_at": entry.updated_at, "updated_by": entry.updated_by}


@operation("/retention/policies", "GET", summary="List retention policies", tag="retention",
           permission="admin", response={"type": "object", "required": ["items"],
                                         "properties": {"items": {"type": "array",
                                                                  "items": POLICY}}},
           description="Those of the configuration file (source `config`, read-only here) and "
                       "those managed through this API (source `api`).")
def list_policies() -> dict[str, Any]:
    return {"items": [policy_json(e) for e in _service().policies()]}


@operation("/retention/policies/{policy}", "GET", summary="One retention policy",
           tag="retention", permission="admin", response=POLICY, parameters=(POLICY_PATH,))
def get_policy(policy: str) -> dict[str, Any]:
    try:
        return policy_json(_service().policy(policy))
    except PolicyNotFound as exc:
        raise Problem("not_found", f"no retention policy {policy}") from exc


@operation("/retention/policies/{policy}", "PUT", summary="Create or replace a policy",
           tag="retention", permission="admin", response=POLICY, parameters=(POLICY_PATH,),
           body=POLICY_BODY,
           description="409 `conflict` for a policy of the configuration file (change it "
                       "there). Nothing runs until its schedule fires or a run is asked for.")
def put_policy(policy: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        parsed = RetentionPolicy.model_validate({**body, "name": policy})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "body"
        raise Problem("invalid_parameter", f"{where}: {err['msg']}", parameter=where) from exc
    try:
        _service().put_policy(parsed, current_actor().label)
    except PolicyReadOnly as exc:
        raise Problem("conflict", f"{policy} is defined in the configuration file") from exc
    return policy_json(_service().policy(policy))


@operation("/retention/policies/{policy}", "DELETE", summary="Delete a policy",
           tag="retention", permission="admin", response=None, status=204,
           parameters=(POLICY_PATH,))
def delete_policy(policy: str) -> None:
    try:
        _service().delete_policy(policy)
    except PolicyReadOnly as exc:
        raise Problem("conflict", f"{policy} is defined in the configuration file") from exc
    except PolicyNotFound as exc:
        raise Problem("not_found", f"no retention policy {policy}") from exc


@operation("/retention/runs", "POST", summary="Run retention now (or plan it: dry run)",
           tag="retention", permission="admin", response=RUN_RESULT,
           body={"type": "object", "additionalProperties": False, "properties": {
               "policy": {"type": ["string", "null"], "maxLength": 64,
                          "description": "one policy; absent: every enabled one, then "
                                         "label expiry"},
               "dry_run": {"type": "boolean", "description": "plan only (default true)"},
               "limit": {"type": "integer", "minimum": 0, "maximum": 1000000,
                         "description": "deletions listed per run (default 10000)"}}},
           description="Synchronous. A dry run lists every tag and manifest that would go and "
                       "the rule that decided; a real run deletes exactly that list (each "
                       "re-checked) and records an audit entry per deletion. 409 `conflict` "
                       "while a real run of the policy is going on anywhere.")
def start_run(body: dict[str, Any]) -> dict[str, Any]:
    limit = body.get("limit", 10000)
    try:
        results = _service().run(body.get("policy"), dry_run=body.get("dry_run", True),
                                 trigger="api")
    except PolicyNotFound as exc:
        raise Problem("not_found", f"no retention policy {body.get('policy')}") from exc
    except RetentionRunning as exc:
        raise Problem("conflict", str(exc)) from exc
    runs = []
    for result in results:
        items = result.planned if result.dry_run else result.deleted
        runs.append({**result.summary(), "deletions": [d.as_dict() for d in items[:limit]],
                     "truncated": len(items) > limit})
    return {"runs": runs}


@operation("/retention/runs", "GET", summary="Recent retention runs", tag="retention",
           permission="admin",
           response={"type": "object", "required": ["items"],
                     "properties": {"items": {"type": "array", "items": RUN}}},
           parameters=(query("policy", {"type": "string", "maxLength": 64}, "This policy's."),
                       query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                       "default": 50})))
def list_runs(policy: str | None, limit: int) -> dict[str, Any]:
    return {"items": _service().runs(policy, limit)}


@operation("/retention/runs/{run}", "GET", summary="A run and its audit entries",
           tag="retention", permission="admin", response=RUN,
           parameters=({"name": "run", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 1}},
                       query("limit", {"type": "integer", "minimum": 1, "maximum": 100000,
                                       "default": 1000}, "audit entries listed")))
def get_run(run: str, limit: int) -> dict[str, Any]:
    if not run.isdigit() or len(run) > 18:
        raise Problem("invalid_parameter", "run must be an integer", parameter="run")
    record = _service().run_record(int(run), limit)
    if record is None:
        raise Problem("not_found", f"no retention run {run}")
    return record
