"""Failures of the administration services (core/admin_*.py). No Flask here.

Each has a stable code and the HTTP status that goes with it: the management
API renders them as RFC 9457 problems with that code (web/api/problems.py CODES).
"""

from __future__ import annotations


class AdminError(Exception):
    code = "bad_request"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(AdminError):
    """The request can't be carried out as given (bad name, password, scope)."""

    code = "bad_request"
    status = 400


class NotFound(AdminError):
    code = "not_found"
    status = 404


class Conflict(AdminError):
    """It exists already, or something else is running (a garbage collection)."""

    code = "conflict"
    status = 409


class NotConfigured(AdminError):
    """The registry is not set up for this (no htpasswd file, robots disabled)."""

    code = "not_configured"
    status = 409
