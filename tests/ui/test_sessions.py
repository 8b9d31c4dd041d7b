"""UI sessions are rows in the index: the cookie alone signs nobody in."""

from __future__ import annotations

import shutil
import time

from flask.testing import FlaskClient

from ociregistry.auth.htpasswd import Htpasswd
from ociregistry.metadata import schema
from tests.ui.conftest import AUTH_RULES, PASSWORDS, make_app, sign_in, write_htpasswd

COOKIE = "ociregistry_ui"


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE, path="/")
    assert cookie is not None
    return cookie.value


def _signed_in_as_admin(client: FlaskClient) -> bool:
    r = client.get("/ui/gc")
    assert r.status_code in (200, 302)
    return r.status_code == 200


def test_a_cookie_without_a_session_row_signs_nobody_in(auth_app):
    app, _ = auth_app
    client = app.test_client()
    # What a cookie used to carry (user, password stamp, time), signed with the
    # right key: it is not a session.
    stamp = app.extensions["ociregistry.auth"].htpasswd.fingerprint("admin")
    forged = app.session_interface.get_signing_serializer(app).dumps(
        {"user": "admin", "stamp": stamp, "since": time.time()})
    client.set_cookie(COOKIE, forged, path="/")
    assert not _signed_in_as_admin(client)
    client.set_cookie(COOKIE, app.session_interface.get_signing_serializer(app).dumps(
        {"sid": "made-up"}), path="/")
    assert not _signed_in_as_admin(client)


def test_a_session_ends_when_its_lifetime_is_over(auth_app):
    app, runtime = auth_app
    client = app.test_client()
    sign_in(client, "admin")
    assert _signed_in_as_admin(client)
    with runtime.metadata.write() as conn:  # as if the sign-in were long ago
        conn.execute(schema.ui_sessions.update().values(expires_at=time.time() - 1))
    assert not _signed_in_as_admin(client)


def test_sessions_last_the_configured_lifetime(tmp_path):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    app, runtime = make_app(tmp_path, auth={"htpasswd": str(htpasswd), "rules": AUTH_RULES},
                            ui={"session_lifetime_seconds": 600})
    client = app.test_client()
    before = time.time()
    sign_in(client, "alice")
    with runtime.metadata.read() as conn:
        expires = conn.execute(schema.ui_sessions.select()).one().expires_at
    assert before + 600 <= expires <= time.time() + 600
    runtime.metadata.dispose()


def test_a_password_edited_in_one_copy_of_the_file_ends_the_session_everywhere(tmp_path):
    """Two instances share the database, each with its own copy of the htpasswd file."""
    first = write_htpasswd(tmp_path / "htpasswd-a", PASSWORDS)
    second = tmp_path / "htpasswd-b"
    shutil.copy(first, second)
    shared = {"data_dir": str(tmp_path / "data")}
    app_a, runtime_a = make_app(tmp_path, **shared,
                                auth={"htpasswd": str(first), "rules": AUTH_RULES})
    app_b, runtime_b = make_app(tmp_path, **shared,
                                auth={"htpasswd": str(second), "rules": AUTH_RULES})
    a, b = app_a.test_client(), app_b.test_client()
    sign_in(a, "admin")
    b.set_cookie(COOKIE, _cookie(a), path="/")
    assert _signed_in_as_admin(a) and _signed_in_as_admin(b)
    # Instance A's file gets a new password (an editor, htpasswd -B, a config push).
    Htpasswd(str(first)).set_password("admin", "changed-on-a", cost=4)
    app_a.extensions["ociregistry.auth"].htpasswd.reload()
    assert not _signed_in_as_admin(a)
    # B's copy is still the old one: the session has ended there too.
    assert not _signed_in_as_admin(b)
    runtime_a.metadata.dispose()
    runtime_b.metadata.dispose()
