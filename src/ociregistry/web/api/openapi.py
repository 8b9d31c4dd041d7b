"""The OpenAPI 3.1 document of /api/v1, built from the operations' own declarations."""

from __future__ import annotations

from typing import Any

from ociregistry import __version__
from ociregistry.web.api import problems
from ociregistry.web.api.blueprint import OPERATIONS, PREFIX, SCHEMAS

_SECURITY = [{"basic": []}, {"bearer": []}, {"session": [], "csrf": []}, {}]
_PROBLEM = {
    "description": "A problem (RFC 9457); `code` is stable, see the `Problem` schema.",
    "content": {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
_LINK = {
    "description": 'RFC 8288 links: rel="next" and rel="prev" pages, when there are any',
    "schema": {"type": "string"},
}


def _operation(op: Any) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = {op.media_type: {"schema": op.response}}
    if op.paginated:
        success["headers"] = {"Link": _LINK}
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": op.parameters,
        "responses": {str(op.status): success, "default": _PROBLEM},
        "security": [{}] if op.permission == "public" else _SECURITY,
        "x-permission": op.permission,
    }
    if op.description:
        doc["description"] = op.description
    if op.body is not None:
        doc["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": op.body}}}
    return doc


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = _operation(op)
    codes = "\n".join(f"- `{code}` ({status}): {title}"
                      for code, (status, title) in problems.CODES.items())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "python-docker-registry management API",
            "version": __version__,
            "description": (
                "The management API the web UI itself uses (see docs/api.md). Errors are "
                "`application/problem+json` documents (RFC 9457) whose `code` is one of:\n\n"
                + codes
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {"Problem": problems.schema(), **SCHEMAS},
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic",
                          "description": "htpasswd users and robot accounts (robot$name)"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "a token from the registry's token service"},
                "session": {"type": "apiKey", "in": "cookie", "name": "ociregistry_ui",
                            "description": "the web UI's session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                         "description": "required with the session on POST/PUT/PATCH/DELETE"},
            },
        },
    }
