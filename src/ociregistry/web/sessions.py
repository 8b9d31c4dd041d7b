"""Flask's signed-cookie sessions without their cost on requests that carry no cookie."""

from __future__ import annotations

from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions (the UI's), made cheap for every other request.

    Flask opens the session of every request, and builds a new signing serializer
    each time, cookie or not: a request without the cookie now skips it, and the
    serializer is made once per key.
    """

    _cached: tuple[Any, Any] | None = None

    def get_signing_serializer(self, app: Flask) -> Any:
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._cached
        if cached is None or cached[0] != key:
            cached = self._cached = (key, super().get_signing_serializer(app))
        return cached[1]

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        # Nothing to write and nothing read (no Vary: Cookie): what Flask would end
        # with too, after working out every cookie attribute first.
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)
