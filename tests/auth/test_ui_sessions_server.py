"""Web UI sessions and sign-in limits on a real server with several workers.

Sessions live in the index and failed sign-ins are counted there, so what one
worker process decides holds in every other: connections are pinned to
distinct workers (tests/api/test_workers.py explains how).
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from tests.api.test_workers import WORKERS, _connections_on_distinct_workers, _send
from tests.auth.support import GROUPS, PASSWORDS, RULES, SecureRegistry, write_htpasswd

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")

COOKIE = "ociregistry_ui"


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    htpasswd = write_htpasswd(tmp_path / "htpasswd")
    return {"data_dir": str(tmp_path / "data"),
            "auth": {"htpasswd": str(htpasswd), "rules": RULES, "groups": GROUPS}, **extra}


def _cookie_and_token(session: requests.Session, url: str) -> tuple[str, str]:
    r = session.get(url + "/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    assert r.status_code == 200 and token, r.text[:1000]
    return session.cookies[COOKIE], token.group(1)


def sign_in(url: str, user: str) -> str:
    """Sign in as ``user``; the session cookie's value."""
    s = requests.Session()
    _, token = _cookie_and_token(s, url)
    r = s.post(url + "/ui/login", data={"username": user, "password": PASSWORDS[user],
                                        "csrf_token": token}, allow_redirects=False)
    assert r.status_code == 303, r.text[:1000]
    return s.cookies[COOKIE]


def gc_page(url: str, cookie: str) -> requests.Response:
    """An admin-only page: 200 for a signed-in admin, else a redirect to sign in."""
    return requests.get(url + "/ui/gc", cookies={COOKIE: cookie}, allow_redirects=False)


def sign_out(url: str, cookie: str) -> None:
    s = requests.Session()
    # As the browser holds it: for the registry's host, so the updated cookie the
    # server sets next replaces it (rather than a second cookie beside it).
    s.cookies.set(COOKIE, cookie, domain=urlsplit(url).hostname, path="/")
    html = s.get(url + "/ui/gc").text  # the form's CSRF token lands in the cookie
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token, html[:1000]
    r = s.post(url + "/ui/logout", data={"csrf_token": token.group(1)}, allow_redirects=False)
    assert r.status_code == 303


def test_sign_in_guessing_is_refused_whichever_worker_answers(tmp_path):
    limit = 4
    server = SecureRegistry(tmp_path / "data", _config(
        tmp_path, rate_limit={"auth_failures": limit}), workers=WORKERS).start()
    try:
        cookie, token = _cookie_and_token(requests.Session(), server.url)
        conns = _connections_on_distinct_workers(server, WORKERS)
        assert len({pid for pid, _ in conns}) == WORKERS

        def attempt(conn: http.client.HTTPConnection, password: str) -> http.client.HTTPResponse:
            body = f"username=alice&password={password}&csrf_token={token}".encode()
            return _send(conn, "POST", "/ui/login", body, {
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"{COOKIE}={cookie}"})

        # The allowed failures, spread over every worker.
        for i in range(limit):
            assert attempt(conns[i % WORKERS][1], f"guess-{i}").status == 401
        # Then every worker refuses, the right password included.
        for pid, conn in conns:
            for password in ("guess-again", PASSWORDS["alice"]):
                r = attempt(conn, password)
                assert r.status == 429, (pid, password, r.status)
                assert int(r.getheader("Retry-After")) >= 1
                assert r.getheader("Content-Type").startswith("text/html")
        for _, conn in conns:
            conn.close()
    finally:
        server.stop()


def test_an_old_cookie_is_worthless_after_sign_out(tmp_path):
    server = SecureRegistry(tmp_path / "data", _config(tmp_path), workers=2).start()
    try:
        cookie = sign_in(server.url, "root")
        assert gc_page(server.url, cookie).status_code == 200
        sign_out(server.url, cookie)
        # The browser dropped it; a thief who copied it before gets nothing.
        for _ in range(4):  # whichever worker answers
            r = gc_page(server.url, cookie)
            assert r.status_code == 302 and r.headers["Location"].startswith("/ui/login")
    finally:
        server.stop()


def test_user_passwd_ends_existing_sessions_on_every_instance(tmp_path):
    config = _config(tmp_path)
    server = SecureRegistry(tmp_path / "data", config, workers=2).start()
    try:
        cookie = sign_in(server.url, "root")
        other = sign_in(server.url, "alice")
        assert gc_page(server.url, cookie).status_code == 200
        # The password is changed on another machine, in its copy of the file: this
        # registry's file stays as it was, only the shared database hears of it.
        copy = tmp_path / "htpasswd-elsewhere"
        shutil.copy(config["auth"]["htpasswd"], copy)
        config_file = tmp_path / "cli.yml"
        config_file.write_text(yaml.safe_dump(config))
        cli = subprocess.run(
            [sys.executable, "-m", "ociregistry", "user", "passwd", "root", "--config",
             str(config_file), "--htpasswd", str(copy), "--password-stdin", "--cost", "4"],
            input="a new password\n", capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert "1 web UI session(s) of root ended" in cli.stdout
        for _ in range(4):
            r = gc_page(server.url, cookie)
            assert r.status_code == 302 and r.headers["Location"].startswith("/ui/login")
        # other users keep theirs
        r = requests.get(server.url + "/ui/r/team-a/none", cookies={COOKIE: other},
                         allow_redirects=False)
        assert r.status_code != 302
    finally:
        server.stop()
