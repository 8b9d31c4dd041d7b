"""The harness of tests/api/test_fast_writes.py (and tests/cluster/test_pg_fast_writes.py).

A write can't be sent twice to the same place, so each request is sent to two twin
repositories that hold the same content: ``{p}`` in the path (and body) is "wa" for
Flask's side (the fast write route switched off) and "wb" for the route as
configured. Compared, with "wa/" read as "wb/": status, headers (names, values,
order), body, the access-log record (all but the duration), the Prometheus samples
the request adds, and the rows it wrote to the events outbox and the tag history
(with their actor), but for ids and times.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from werkzeug.test import EnvironBuilder

from ociregistry.metadata import schema as t
from ociregistry.web.fast_writes import EXTENSION
from ociregistry.web.observability import ACCESS_LOGGER
from tests.api.fast_reads_support import (
    SERVICE,
    Harness,
    _Collect,
    _delta,
    _samples,
    access_line,
    call_wsgi,
)
from tests.auth.support import PASSWORDS

SIDES = ("wa", "wb")  # Flask's, the fast route's
# Settings under which every write is Flask's: the route switched off, rate limits
# (counted by Flask's hooks), a default mirror (every name is the mirror's).
FLASK_SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("off", {"http": {"fast_writes": False}}),
    ("limited", {"rate_limit": {"per_address": 1000}}),
    ("default", {"mirror": {"upstreams": [{
        "name": "hub", "url": "http://127.0.0.1:9", "default": True}]}}),
)


class WriteHarness(Harness):
    def __init__(self, tmp_path: Path, mode: str | None, **settings: Any) -> None:
        super().__init__(tmp_path, mode, **settings)
        self.writes = self.app.extensions[EXTENSION]
        self.write_flask_calls = 0
        inner = self.writes.app

        def counted(environ: dict, start_response: Any) -> Any:
            self.write_flask_calls += 1
            return inner(environ, start_response)

        self.writes.app = counted

    def _rows(self, table: sa.Table, after: int) -> list[dict]:
        with self.runtime.metadata.read() as conn:
            rows = conn.execute(sa.select(table).where(table.c.id > after)
                                .order_by(table.c.id)).mappings().all()
        return [dict(row) for row in rows]

    def _last(self, table: sa.Table) -> int:
        with self.runtime.metadata.read() as conn:
            return conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))
                                ).scalar_one()

    def send(self, fast: bool, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> dict:
        """One request; ``fast`` False: the fast write route switched off."""
        enabled = self.writes.enabled
        if not fast:
            self.writes.enabled = False
        handler = _Collect(self.records)
        logger = logging.getLogger(ACCESS_LOGGER)
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)
        before_samples = _samples()
        calls = self.write_flask_calls
        events, history = self._last(t.events), self._last(t.tag_history)
        path, _, query = path.partition("?")
        builder = EnvironBuilder(path=path, query_string=query, method=method,
                                 headers=headers or {}, data=body,
                                 environ_base={"REMOTE_ADDR": "192.0.2.7"})
        environ = builder.get_environ()
        builder.close()
        if "Content-Length" in (headers or {}):  # as sent, even when it is not the body's
            environ["CONTENT_LENGTH"] = headers["Content-Length"]  # type: ignore[index]
        captured: dict[str, Any] = {}

        try:
            answer = call_wsgi(self.app.wsgi_app, environ, captured)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            self.writes.enabled = enabled
        return {
            "status": captured["status"], "headers": captured["headers"], "body": answer,
            "log": access_line(handler), "metrics": _delta(before_samples, _samples()),
            "events": [{**{k: v for k, v in e.items() if k not in ("id", "uid", "created_at")},
                        "body": _without(json.loads(e["body"]), "time", "id")}
                       for e in self._rows(t.events, events)],
            "history": [{k: v for k, v in h.items() if k not in ("id", "at", "repository_id")}
                        for h in self._rows(t.tag_history, history)],
            "flask": self.write_flask_calls > calls,
        }

    def pair(self, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None, *, fast: bool, status: int,
             same: bool = True, uploads: dict[str, str] | None = None) -> dict:
        """The request on Flask's twin, then on the fast route's; ``fast``: the fast route
        answered it; ``same`` False: only status and route compared.

        ``{u}`` in the path is each twin's own upload session (``uploads``, by side).
        An upload's id (that one, or the one a POST opened: Docker-Upload-UUID) is
        read as ``{u}`` in either answer; the answer's ``uploads`` holds both ids."""
        headers = {"X-Request-ID": "parity-1", **(headers or {})}
        sides, ids = [], {}
        for on, side in ((False, SIDES[0]), (True, SIDES[1])):
            upload = (uploads or {}).get(side, "")
            sent = self.send(on, method, path.replace("{p}", side).replace("{u}", upload),
                             body.replace(b"{p}", side.encode()), headers)
            ids[side] = upload or dict(sent["headers"]).get("Docker-Upload-UUID", "")
            sides.append(_masked(sent, ids[side]) if ids[side] else sent)
        reference, answer = (_renamed(sides[0]), sides[1])
        answer["uploads"] = ids
        assert reference["flask"]
        assert answer["flask"] is (not fast), f"{method} {path}: fast route expected {fast}"
        assert int(reference["status"].split()[0]) == status, reference
        if not same:
            assert answer["status"] == reference["status"]
            return answer
        for key in ("status", "headers", "body", "log", "metrics", "events", "history"):
            assert answer[key] == reference[key], (key, method, path)
        return answer


def _without(body: dict, *keys: str) -> dict:
    return {k: v for k, v in body.items() if k not in keys}


def _masked(value: Any, upload: str) -> Any:
    """``value`` with the upload id ``upload`` read as "{u}"."""
    if isinstance(value, str):
        return value.replace(upload, "{u}")
    if isinstance(value, bytes):
        return value.replace(upload.encode(), b"{u}")
    if isinstance(value, dict):
        return {_masked(k, upload): _masked(v, upload) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_masked(v, upload) for v in value)
    return value


def _renamed(value: Any) -> Any:
    """``value`` with Flask's twin named as the fast route's ("wa/" read as "wb/")."""
    old, new = SIDES[0] + "/", SIDES[1] + "/"
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, bytes):
        return value.replace(old.encode(), new.encode())
    if isinstance(value, dict):
        return {_renamed(k): _renamed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_renamed(v) for v in value)
    return value


def _basic(user: str, password: str | None = None) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password or PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _token(h: WriteHarness, user: str, scope: str) -> str:
    r = h.client.get("/auth/token", query_string={"service": SERVICE, "scope": scope},
                     headers=_basic(user))
    assert r.status_code == 200, r.get_data()
    return r.get_json()["token"]
