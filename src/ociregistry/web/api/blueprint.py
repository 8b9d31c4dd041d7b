"""The /api/v1 blueprint and the one way to add a route to it: ``@operation``.

A resource module declares each operation once: path, method, summary,
parameters (OpenAPI parameter objects), response schema and the permission it
needs. The same declaration registers the Flask route, validates the query
parameters, checks the permission before the view runs, and feeds the OpenAPI
document (openapi.py). A route cannot exist undocumented: nothing else adds
rules to this blueprint (tests/api_v1 checks the app's URL map against it).

Views receive their path and query parameters as keyword arguments (query
names with ``-`` become ``_``) and return plain data (JSON), ``None`` (204) or
a ``Response``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from ociregistry.core.errors import RegistryError
from ociregistry.web.api import access
from ociregistry.web.api.problems import Problem, code_for_status, from_registry_error

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
bp.before_request(access.authenticate)
PREFIX = "/api/v1"

# Who may call an operation. "repository:<action>": that action on the repository
# named by the ``name`` path parameter; "list": anyone, results filtered to what
# the caller may pull; "admin": registry admins; "public": anyone.
PERMISSIONS = ("public", "list", "repository:pull", "repository:push",
               "repository:delete", "admin")


@dataclass
class Operation:
    path: str  # OpenAPI form, below /api/v1: "/repositories/{name}/tags"
    method: str
    operation_id: str
    summary: str
    tag: str
    permission: str
    parameters: list[dict[str, Any]]
    response: dict[str, Any] | None  # JSON schema of the success body; None: no body
    status: int = 200
    description: str = ""
    media_type: str = "application/json"
    paginated: bool = False  # sends Link rel="next"/"prev"
    body: dict[str, Any] | None = None  # JSON schema of a required JSON request body
    view: Callable[..., Any] | None = field(default=None, repr=False)


OPERATIONS: list[Operation] = []
SCHEMAS: dict[str, dict[str, Any]] = {}  # components/schemas, by name


def schema(name: str, definition: dict[str, Any]) -> dict[str, Any]:
    """Declare a named schema; returns a $ref to it."""
    SCHEMAS[name] = definition
    return {"$ref": f"#/components/schemas/{name}"}


def query(name: str, schema_: dict[str, Any], description: str = "",
          required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema_}


REPOSITORY_NAME = {
    "name": "name", "in": "path", "required": True,
    "description": "Repository name; it may contain slashes, sent as they are "
                   "(`library/nginx`) or encoded (`library%2Fnginx`).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255,
               "pattern": r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                          r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"},
}


def _rule(path: str) -> str:
    """Flask rule of an OpenAPI path: ``{name}`` takes slashes, the others don't."""
    return re.sub(
        r"\{(\w+)\}", lambda m: f"<path:{m[1]}>" if m[1] == "name" else f"<{m[1]}>", path)


def operation(path: str, method: str, *, summary: str, tag: str, permission: str,
              response: dict[str, Any] | None, parameters: tuple[dict[str, Any], ...] = (),
              status: int = 200, description: str = "", paginated: bool = False,
              media_type: str = "application/json",
              body: dict[str, Any] | None = None) -> Callable[[Callable], Callable]:
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        op = Operation(path, method.upper(), view.__name__, summary, tag, permission,
                       list(parameters), response, status, description, media_type,
                       paginated, body, view)
        OPERATIONS.append(op)

        def endpoint(**path_args: str) -> Response:
            return _dispatch(op, path_args)

        bp.add_url_rule(_rule(path), endpoint=op.operation_id, view_func=endpoint,
                        methods=[op.method])
        return view

    return register


def _dispatch(op: Operation, path_args: dict[str, str]) -> Response:
    kwargs: dict[str, Any] = dict(path_args)
    for param in op.parameters:
        if param["in"] == "query":
            kwargs[param["name"].replace("-", "_")] = _query_value(param)
    access.check(op.permission, path_args.get("name"))
    if op.body is not None:  # read after the permission check: strangers' bodies go unread
        from ociregistry.web.api.bodies import read_json_body

        kwargs["body"] = read_json_body(op.body)
    result = op.view(**kwargs)
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(status=204)
    return Response(json.dumps(result), status=op.status, mimetype=op.media_type)


def _query_value(param: dict[str, Any]) -> Any:
    """The parameter's value, checked against its (small) schema; default when absent."""
    name, rules = param["name"], param["schema"]
    values = request.args.getlist(name)
    if not values:
        if param.get("required"):
            raise Problem("invalid_parameter", f"{name} is required", parameter=name)
        return rules.get("default")
    if len(values) > 1:
        raise Problem("invalid_parameter", f"{name} is given more than once", parameter=name)
    raw = values[0]
    kind = rules.get("type", "string")
    value: Any = raw
    if kind == "integer":
        if not re.fullmatch(r"-?[0-9]{1,18}", raw):
            raise Problem("invalid_parameter", f"{name} must be an integer", parameter=name)
        value = int(raw)
        if value < rules.get("minimum", value) or value > rules.get("maximum", value):
            raise Problem("invalid_parameter",
                          f"{name} must be between {rules.get('minimum')} and "
                          f"{rules.get('maximum')}", parameter=name)
    elif kind == "boolean":
        if raw not in ("true", "false"):
            raise Problem("invalid_parameter", f"{name} must be true or false", parameter=name)
        value = raw == "true"
    else:
        if "enum" in rules and raw not in rules["enum"]:
            raise Problem("invalid_parameter",
                          f"{name} must be one of {', '.join(rules['enum'])}", parameter=name)
        if len(raw) < rules.get("minLength", 0) or len(raw) > rules.get("maxLength", len(raw)):
            raise Problem("invalid_parameter", f"{name} has a bad length", parameter=name)
        if "\x00" in raw:
            raise Problem("invalid_parameter", f"{name} holds a NUL character", parameter=name)
    return value


# -- errors: always problem+json under /api/v1 ---------------------------------------
@bp.errorhandler(Problem)
def _problem(exc: Problem) -> Response:
    return exc.response()


@bp.errorhandler(RegistryError)
def _registry_error(exc: RegistryError) -> Response:
    return from_registry_error(exc.code, exc.status, exc.message, exc.headers).response()


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # Allow
    problem = Problem(code_for_status(status), exc.description or exc.name, headers=headers)
    problem.status = status
    return problem.response()


def unrouted_problem(exc: HTTPException) -> Response | None:
    """A 404/405 under /api/v1 that matched no rule (no blueprint handler runs then)."""
    if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
        return None
    return _http_error(exc)


def api_services() -> Any:
    from ociregistry.web.api import SERVICES

    return current_app.extensions[SERVICES]


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    import logging

    from ociregistry.faults import RETRY_AFTER, dependency_down

    dependency = dependency_down(exc)
    if dependency is not None:
        return Problem("unavailable", f"the registry's {dependency} is unavailable, try again "
                       "shortly", headers={"Retry-After": str(RETRY_AFTER)}).response()
    logging.getLogger("ociregistry").exception("unhandled error in /api/v1")
    return Problem("internal_error").response()
