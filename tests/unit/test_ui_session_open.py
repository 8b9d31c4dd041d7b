"""The UI's session interface opens a cookie-less request's session without building the
signing serializer, and answers exactly as Flask's own interface does."""

from __future__ import annotations

import pytest
from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface

from ociregistry.web.ui.security import configure_sessions


def _app(interface: SecureCookieSessionInterface | None) -> Flask:
    app = Flask(__name__)
    configure_sessions(app, b"k" * 32)
    if interface is not None:
        app.session_interface = interface

    @app.get("/set")
    def _set() -> str:
        session["who"] = "alice"
        return "set"

    @app.get("/get")
    def _get() -> str:
        return session.get("who", "-")

    @app.get("/none")
    def _none() -> str:
        return "none"

    return app


@pytest.mark.parametrize("path", ["/none", "/get", "/set"])
def test_answers_as_flasks_interface(path: str) -> None:
    ours = _app(None).test_client().get(path)
    flasks = _app(SecureCookieSessionInterface()).test_client().get(path)
    assert ours.status_code == flasks.status_code == 200
    assert ours.data == flasks.data

    def headers(r: object) -> list:
        return [(k, v) for k, v in r.headers.items() if k != "Set-Cookie"]  # type: ignore[attr-defined]

    assert headers(ours) == headers(flasks)
    assert ("Set-Cookie" in ours.headers) == ("Set-Cookie" in flasks.headers) == (path == "/set")


def test_a_session_cookie_is_still_read_and_a_forged_one_refused() -> None:
    client = _app(None).test_client()
    assert client.get("/get").data == b"-"
    client.get("/set")
    assert client.get("/get").data == b"alice"
    client.set_cookie("ociregistry_ui", "forged.value.sig")
    assert client.get("/get").data == b"-"
