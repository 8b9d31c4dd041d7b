"""RFC 9457 problem details (``application/problem+json``) for /api/v1, and its stable codes.

Every failure of the management API answers one JSON object: ``type``, ``title``,
``status``, ``detail`` and ``code``. ``code`` is the stable, documented part a
script may branch on; ``title`` goes with it; ``detail`` is for humans and may
change. The table below is the only place codes are defined: the OpenAPI
document lists it, and registry (OCI) errors raised by the core map onto it.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:ociregistry:problem:"

# code: (status, title). Add codes; never rename or reuse one.
CODES: dict[str, tuple[int, str]] = {
    "bad_request": (400, "The request is malformed"),
    "invalid_parameter": (400, "A parameter is invalid"),
    "invalid_cursor": (400, "The pagination cursor is invalid"),
    "invalid_name": (400, "The repository name is invalid"),
    "invalid_reference": (400, "The tag or digest is invalid"),
    "unauthorized": (401, "Authentication required"),
    "forbidden": (403, "Not allowed"),
    "csrf_failed": (403, "The CSRF token is missing or wrong"),
    "not_found": (404, "Not found"),
    "repository_not_found": (404, "Repository not found"),
    "manifest_not_found": (404, "Manifest not found"),
    "tag_not_found": (404, "Tag not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "unsupported": (405, "The operation is not enabled on this registry"),
    "conflict": (409, "The request conflicts with the current state"),
    "not_configured": (409, "The registry is not set up for this"),
    "payload_too_large": (413, "The request body is too large"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "too_many_requests": (429, "Too many requests"),
    "internal_error": (500, "Internal server error"),
    "unavailable": (503, "Temporarily unavailable"),
}

# OCI error codes the core raises, as problem codes.
_OCI_CODES = {
    "NAME_INVALID": "invalid_name",
    "NAME_UNKNOWN": "repository_not_found",
    "MANIFEST_UNKNOWN": "manifest_not_found",
    "TAG_INVALID": "invalid_reference",
    "DIGEST_INVALID": "invalid_reference",
    "UNAUTHORIZED": "unauthorized",
    "DENIED": "forbidden",
    "UNSUPPORTED": "unsupported",
    "TOOMANYREQUESTS": "too_many_requests",
    "PAGINATION_NUMBER_INVALID": "invalid_parameter",
}
_BY_STATUS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 429: "too_many_requests", 503: "unavailable",
}


class Problem(Exception):
    """Raise to answer a problem document; ``code`` must be in CODES."""

    def __init__(self, code: str, detail: str | None = None, *,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        status, title = CODES[code]
        self.code, self.status, self.title = code, status, title
        self.detail = detail or title
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.detail)

    def response(self) -> Response:
        body = {"type": TYPE_PREFIX + self.code, "title": self.title, "status": self.status,
                "detail": self.detail, "code": self.code, **self.extra}
        response = Response(json.dumps(body), status=self.status, mimetype=MEDIA_TYPE)
        for key, value in self.headers.items():
            response.headers[key] = value
        return response


def code_for_status(status: int) -> str:
    return _BY_STATUS.get(status, "internal_error" if status >= 500 else "bad_request")


def from_registry_error(oci_code: str, status: int, message: str,
                        headers: dict[str, str] | None = None) -> Problem:
    code = _OCI_CODES.get(oci_code)
    if code is None or CODES[code][0] != status:
        code = code_for_status(status)
    problem = Problem(code, message, headers=headers)
    problem.status = status  # the core's status wins (e.g. 405 with delete disabled)
    return problem


def schema() -> dict[str, Any]:
    """The JSON schema of a problem document (for the OpenAPI document)."""
    return {
        "type": "object",
        "required": ["type", "title", "status", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "enum": sorted(CODES)},
        },
    }
