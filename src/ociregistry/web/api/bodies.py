"""JSON request bodies of /api/v1 operations, checked against their declared schema.

Only the small subset of JSON Schema the operations use: an object with
``required`` and ``properties`` of type string (minLength, maxLength,
pattern), boolean, integer (minimum, maximum) or array of strings (maxItems);
no other properties (``additionalProperties: false``). Anything else is a 400
problem, never a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request

from ociregistry.web.api.problems import Problem

MAX_BODY = 64 * 1024


def read_json_body(schema: dict[str, Any]) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Problem("payload_too_large", f"at most {MAX_BODY} bytes")
    if request.mimetype != "application/json":
        raise Problem("unsupported_media_type", "send the body as application/json")
    raw = request.stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise Problem("payload_too_large", f"at most {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem("bad_request", "the body is not JSON") from exc
    check(body, schema)
    return body


def _bad(name: str, message: str) -> Problem:
    return Problem("invalid_parameter", f"{name}: {message}", parameter=name)


def check(body: Any, schema: dict[str, Any]) -> None:
    if not isinstance(body, dict):
        raise Problem("bad_request", "the body must be a JSON object")
    properties = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in body:
            raise _bad(name, "required")
    for name, value in body.items():
        rules = properties.get(name)
        if rules is None:
            raise _bad(name, "unknown property")
        _check_value(name, value, rules)


def _check_value(name: str, value: Any, rules: dict[str, Any]) -> None:
    kind = rules.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        if value is None and "null" in kind:
            return
        kind = next(k for k in kind if k != "null")
    if kind == "string":
        if not isinstance(value, str):
            raise _bad(name, "must be a string")
        if not rules.get("minLength", 0) <= len(value) <= rules.get("maxLength", len(value)):
            raise _bad(name, "has a bad length")
        if "pattern" in rules and not re.search(rules["pattern"], value):
            raise _bad(name, "has a bad form")
        if "\x00" in value:
            raise _bad(name, "holds a NUL character")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _bad(name, "must be true or false")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(name, "must be an integer")
        if not rules.get("minimum", value) <= value <= rules.get("maximum", value):
            raise _bad(name, "is out of range")
    elif kind == "array":
        if not isinstance(value, list) or len(value) > rules.get("maxItems", len(value)):
            raise _bad(name, "must be a list (of bounded length)")
        if len(value) < rules.get("minItems", 0):
            raise _bad(name, "needs more items")
        for item in value:
            _check_value(name, item, rules.get("items", {}))
