"""The OCI error envelope: every failure answers {"errors":[{code,message,detail}]}."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestedRangeNotSatisfiable, RequestEntityTooLarge

from ociregistry import faults
from ociregistry.core.errors import RegistryError
from ociregistry.web.body import framing_error

log = logging.getLogger("ociregistry")

# Plain HTTP failures mapped onto the closest spec code.
_HTTP_CODES = {
    400: "UNSUPPORTED",
    404: "UNSUPPORTED",
    405: "UNSUPPORTED",
    411: "SIZE_INVALID",
    413: "SIZE_INVALID",
    414: "UNSUPPORTED",
    416: "RANGE_INVALID",
    429: "TOOMANYREQUESTS",
}


def error_response(
    code: str, message: str, status: int, detail: Any = None, headers: dict | None = None
) -> Response:
    body = {"errors": [{"code": code, "message": message, "detail": detail}]}
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RegistryError)
    def _registry_error(exc: RegistryError) -> Response:
        return error_response(exc.code, exc.message, exc.status, exc.detail, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if request.path.startswith("/api/"):  # no rule matched: still a problem document
            from ociregistry.web.api.blueprint import unrouted_problem

            problem = unrouted_problem(exc)
            if problem is not None:
                return problem
        status = exc.code or 500
        headers = {}
        if isinstance(exc, RequestedRangeNotSatisfiable) and exc.length is not None:
            headers["Content-Range"] = f"bytes */{exc.length}"
        if isinstance(exc, RequestEntityTooLarge):
            status = 413
        code = _HTTP_CODES.get(status, "UNSUPPORTED" if status < 500 else "UNKNOWN")
        return error_response(code, exc.description or exc.name, status, None, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A body read outside the registry API (a form) whose framing is broken.
        mapped = framing_error(request.environ, exc)
        if isinstance(mapped, HTTPException):
            return _http_error(mapped)
        down = unavailable_response(exc)
        if down is not None:
            return down
        log.exception("unhandled error")
        return error_response("UNKNOWN", "internal server error", 500)


def unavailable_response(exc: BaseException) -> Response | None:
    """503 + Retry-After in the OCI envelope when the database or storage is down."""
    dependency = faults.dependency_down(exc)
    if dependency is None:
        return None
    return error_response(
        "UNAVAILABLE", f"the registry's {dependency} is unavailable, try again shortly", 503,
        {"dependency": dependency}, {"Retry-After": str(faults.RETRY_AFTER)},
    )
