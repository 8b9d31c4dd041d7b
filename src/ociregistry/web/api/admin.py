"""/api/v1/admin/...: users and groups, robot accounts and tokens, GC runs. Admins only.

HTTP only: each view calls a service of the admin package (admin/users.py,
admin/robots.py, admin/gc.py), the same rules the CLI and the web
UI apply. Robots are never admins, so a robot token is refused here (403).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, g

from ociregistry.admin.errors import AdminError
from ociregistry.admin.gc import MAX_PAGE, GCAdmin
from ociregistry.admin.robots import RobotAdmin, token_dict
from ociregistry.admin.users import UserAdmin
from ociregistry.auth.sessions import UISessions
from ociregistry.core.gc_jobs import GCJobs
from ociregistry.web import auth as registry_auth
from ociregistry.web.api.blueprint import bp, operation, query, schema
from ociregistry.web.api.problems import Problem

EXTENSION = "ociregistry.api.admin"


@dataclass
class AdminServices:
    users: UserAdmin
    robots: RobotAdmin
    gc: GCAdmin


def services() -> AdminServices:
    built = current_app.extensions.get(EXTENSION)
    if built is None:  # built on first use: the auth service exists by then
        runtime = current_app.extensions["ociregistry"]
        auth = registry_auth.service()
        built = AdminServices(
            UserAdmin(auth.htpasswd, auth.rules,
                      UISessions(runtime.metadata, runtime.settings.ui.session_lifetime_seconds),
                      runtime.settings.auth.bcrypt_cost),
            RobotAdmin(auth.robots if auth.enabled else None),
            GCAdmin(GCJobs(runtime.gc, runtime.registry)),
        )
        current_app.extensions[EXTENSION] = built
    return built


@bp.errorhandler(AdminError)
def _admin_error(exc: AdminError) -> Response:
    return Problem(exc.code, exc.message).response()


def _caller() -> str:
    return g.principal.user or "" if getattr(g, "principal", None) else ""


USER_PATH = {"name": "user", "in": "path", "required": True,
             "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
PASSWORD = {"type": "string", "minLength": 1, "maxLength": 72,
            "description": "at most 72 bytes (bcrypt)"}
USER = schema("User", {
    "type": "object", "required": ["name", "groups", "admin"],
    "properties": {
        "name": {"type": "string"},
        "groups": {"type": "array", "items": {"type": "string"},
                   "description": "from auth.groups (read-only)"},
        "admin": {"type": "boolean", "description": "the access rules make this user an admin"},
    },
})
GROUP = schema("Group", {
    "type": "object", "required": ["name", "members", "admin", "read_only"],
    "properties": {
        "name": {"type": "string"},
        "members": {"type": "array", "items": {"type": "string"}},
        "admin": {"type": "boolean"},
        "read_only": {"type": "boolean", "const": True,
                      "description": "groups are set in the configuration file (auth.groups)"},
    },
})
SESSIONS_ENDED = schema("SessionsEnded", {
    "type": "object", "required": ["user", "sessions_ended"],
    "properties": {"user": {"type": "string"},
                   "sessions_ended": {"type": "integer",
                                      "description": "web UI sessions of the user revoked"}},
})


def _items(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": item}}}


# -- users and groups --------------------------------------------------------------
@operation("/admin/users", "GET", summary="List users (the htpasswd file)", tag="admin",
           permission="admin", response=_items(USER),
           description="409 `not_configured` when auth.htpasswd is not set.")
def list_users() -> dict[str, Any]:
    return {"items": [u.as_dict() for u in services().users.list_users()]}


@operation("/admin/users", "POST", summary="Create a user", tag="admin", permission="admin",
           response=USER, status=201,
           body={"type": "object", "required": ["name", "password"],
                 "additionalProperties": False,
                 "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 128},
                                "password": PASSWORD}},
           description="The password is hashed with bcrypt at auth.bcrypt_cost. Other worker "
                       "processes see the new user within a second (they re-read the file).")
def create_user(body: dict[str, Any]) -> dict[str, Any]:
    return services().users.create(body["name"], body["password"]).as_dict()


@operation("/admin/users/{user}", "GET", summary="One user", tag="admin", permission="admin",
           response=USER, parameters=(USER_PATH,))
def get_user(user: str) -> dict[str, Any]:
    return services().users.get_user(user).as_dict()


@operation("/admin/users/{user}/password", "PUT", summary="Set a user's password", tag="admin",
           permission="admin", response=SESSIONS_ENDED, parameters=(USER_PATH,),
           body={"type": "object", "required": ["password"], "additionalProperties": False,
                 "properties": {"password": PASSWORD}},
           description="Ends the user's web UI sessions on every instance at once.")
def set_password(user: str, body: dict[str, Any]) -> dict[str, Any]:
    change = services().users.set_password(user, body["password"])
    return {"user": change.user, "sessions_ended": change.sessions_ended}


@operation("/admin/users/{user}", "DELETE", summary="Delete a user", tag="admin",
           permission="admin", response=SESSIONS_ENDED, parameters=(USER_PATH,),
           description="Removes the htpasswd entry and ends the user's web UI sessions. "
                       "Groups and rules naming the user stay in the configuration file.")
def delete_user(user: str) -> dict[str, Any]:
    change = services().users.delete(user)
    return {"user": change.user, "sessions_ended": change.sessions_ended}


@operation("/admin/groups", "GET", summary="List groups (read-only: auth.groups)", tag="admin",
           permission="admin", response=_items(GROUP),
           description="Groups are defined in the configuration file; change them there.")
def list_groups() -> dict[str, Any]:
    return {"items": [grp.as_dict() for grp in services().users.list_groups()]}


# -- robot accounts and tokens ------------------------------------------------------------
TOKEN_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"}, "name": {"type": "string"}, "user": {"type": "string"},
    "scope": {"type": "array", "items": {"type": "string"}},
    "description": {"type": "string"}, "created_by": {"type": "string"},
    "created_at": {"type": "number"}, "expires_at": {"type": ["number", "null"]},
    "last_used_at": {"type": ["number", "null"]}, "revoked_at": {"type": ["number", "null"]},
    "state": {"type": "string", "enum": ["active", "expired", "revoked"]},
}
TOKEN = schema("RobotToken", {"type": "object", "required": list(TOKEN_PROPERTIES),
                              "properties": TOKEN_PROPERTIES})
NEW_TOKEN = schema("NewRobotToken", {
    "type": "object", "required": [*TOKEN_PROPERTIES, "token"],
    "properties": {**TOKEN_PROPERTIES,
                   "token": {"type": "string", "description": "shown this once; log in as "
                                                              "`user` with it"}},
})
ROBOT = schema("Robot", {
    "type": "object", "required": ["name", "user", "active_tokens", "tokens", "last_used_at"],
    "properties": {"name": {"type": "string"}, "user": {"type": "string"},
                   "active_tokens": {"type": "integer"}, "tokens": {"type": "integer"},
                   "last_used_at": {"type": ["number", "null"]}},
})


@operation("/admin/robots", "GET", summary="List robot accounts", tag="admin",
           permission="admin", response=_items(ROBOT))
def list_robots() -> dict[str, Any]:
    return {"items": [r.as_dict() for r in services().robots.robots_list()]}


@operation("/admin/robots/tokens", "GET", summary="List robot tokens (never their secrets)",
           tag="admin", permission="admin", response=_items(TOKEN),
           parameters=(query("robot", {"type": "string", "maxLength": 64}, "This robot only."),
                       query("include-revoked", {"type": "boolean", "default": False})))
def list_tokens(robot: str | None, include_revoked: bool) -> dict[str, Any]:
    tokens = services().robots.tokens(robot, include_revoked)
    return {"items": [token_dict(t) for t in tokens]}


@operation("/admin/robots/tokens", "POST", summary="Create a robot token (returned once)",
           tag="admin", permission="admin", response=NEW_TOKEN, status=201,
           body={"type": "object", "required": ["robot", "scope"], "additionalProperties": False,
                 "properties": {
                     "robot": {"type": "string", "minLength": 1, "maxLength": 64},
                     "scope": {"type": "array", "minItems": 1, "maxItems": 50,
                               "items": {"type": "string", "maxLength": 300},
                               "description": "GLOB:ACTIONS entries, e.g. `ci/**:pull,push`"},
                     "expires": {"type": "string", "maxLength": 16,
                                 "description": "30d, 12h, 2w, 1y or never; default "
                                                "auth.robots.default_expiry_days"},
                     "description": {"type": "string", "maxLength": 255}}})
def create_token(body: dict[str, Any]) -> dict[str, Any]:
    info, token = services().robots.create(
        body["robot"], body["scope"], body.get("expires"), body.get("description", ""),
        created_by=f"api:{_caller()}")
    return {**token_dict(info), "token": token}


@operation("/admin/robots/tokens/{token_id}", "DELETE", summary="Revoke a robot token",
           tag="admin", permission="admin", response=None, status=204,
           parameters=({"name": "token_id", "in": "path", "required": True,
                        "schema": {"type": "string", "maxLength": 32}},),
           description="Refused from the next request on, on every instance.")
def revoke_token(token_id: str) -> None:
    services().robots.revoke_token(token_id)


@operation("/admin/robots/{robot}/tokens", "DELETE", summary="Revoke every token of a robot",
           tag="admin", permission="admin", parameters=(
               {"name": "robot", "in": "path", "required": True,
                "schema": {"type": "string", "maxLength": 64}},),
           response={"type": "object", "required": ["revoked"],
                     "properties": {"revoked": {"type": "array", "items": {"type": "string"}}}})
def revoke_robot(robot: str) -> dict[str, Any]:
    return {"revoked": services().robots.revoke_robot(robot)}


# -- garbage collection ----------------------------------------------------------------------
GC_STATUS = schema("GCStatus", {
    "type": "object", "required": ["state", "running", "elsewhere"],
    "properties": {
        "state": {"type": "string", "enum": ["idle", "starting", "running", "finished",
                                             "failed", "refused", "interrupted"]},
        "running": {"type": "boolean", "description": "a collection holds the lock now"},
        "elsewhere": {"type": "boolean",
                      "description": "it was started outside the job runner (CLI, schedule)"},
        "job": {"type": "string"}, "dry_run": {"type": "boolean"},
        "delete_untagged": {"type": "boolean"}, "started_by": {"type": ["string", "null"]},
        "started_at": {"type": "number"}, "finished_at": {"type": "number"},
        "phase": {"type": "string"}, "done": {"type": "integer"}, "total": {"type": "integer"},
        "result": {"type": "object"}, "error": {"type": "string"},
    },
})
GC_RUN = schema("GCRun", {
    "type": "object",
    "required": ["id", "started_at", "finished_at", "dry_run", "manifests_deleted",
                 "blobs_deleted", "bytes_freed", "uploads_expired"],
    "properties": {"id": {"type": "integer"}, "started_at": {"type": "number"},
                   "finished_at": {"type": ["number", "null"]}, "dry_run": {"type": "boolean"},
                   "manifests_deleted": {"type": "integer"}, "blobs_deleted": {"type": "integer"},
                   "bytes_freed": {"type": "integer"}, "uploads_expired": {"type": "integer"}},
})


@operation("/admin/gc", "GET", summary="The current or last garbage collection", tag="admin",
           permission="admin", response=GC_STATUS,
           description="Progress of a running collection (phase, done, total), or the result "
                       "of the last one started through the API or the UI.")
def gc_status() -> dict[str, Any]:
    return services().gc.status()


@operation("/admin/gc", "POST", summary="Start a garbage collection", tag="admin",
           permission="admin", response=GC_STATUS, status=202,
           body={"type": "object", "required": ["dry_run"], "additionalProperties": False,
                 "properties": {
                     "dry_run": {"type": "boolean",
                                 "description": "count what a run would free; delete nothing"},
                     "delete_untagged": {"type": "boolean",
                                         "description": "also delete untagged manifests"}}},
           description="Runs in the background; poll GET /admin/gc. 409 `conflict` when a "
                       "collection is already running (started anywhere, on any instance).")
def gc_start(body: dict[str, Any]) -> dict[str, Any]:
    return services().gc.start(body["dry_run"], body.get("delete_untagged", False), _caller())


@operation("/admin/gc/jobs/{job}", "GET", summary="A garbage collection job", tag="admin",
           permission="admin", response=GC_STATUS,
           parameters=({"name": "job", "in": "path", "required": True,
                        "schema": {"type": "string", "maxLength": 32}},),
           description="404 once a newer job has started.")
def gc_job(job: str) -> dict[str, Any]:
    found = services().gc.job(job)
    if found is None:
        raise Problem("not_found", f"no job {job} (or a newer one has started)")
    return found


@operation("/admin/gc/runs", "GET", summary="Finished garbage collections, newest first",
           tag="admin", permission="admin",
           response={"type": "object", "required": ["items", "next"],
                     "properties": {"items": {"type": "array", "items": GC_RUN},
                                    "next": {"type": ["integer", "null"],
                                             "description": "pass as `before` for the next "
                                                            "page"}}},
           parameters=(query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                       "default": 50}),
                       query("before", {"type": "integer", "minimum": 1,
                                        "maximum": 2**62}, "Runs with a smaller id.")),
           description="Real runs only: a dry run's figures are in its job's result.")
def gc_runs(limit: int, before: int | None) -> dict[str, Any]:
    runs = services().gc.history(limit, before)
    return {"items": runs, "next": runs[-1]["id"] if len(runs) == limit else None}
