"""The UI's events page: webhook endpoints, their state and delivery log. Admins only
(without authentication: from the registry host only, as for the API and GC).

Everything goes through events/service.py (EventsService), as /api/v1/events does.
A generated secret appears only in the response to the form that created it.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ociregistry.admin.errors import AdminError
from ociregistry.events.formats import FORMATS
from ociregistry.events.service import EventsService
from ociregistry.web.proxies import is_local
from ociregistry.web.ui import access
from ociregistry.web.ui.blueprint import bp

EXTENSION = "ociregistry.ui.events"


def _service() -> EventsService:
    built = current_app.extensions.get(EXTENSION)
    if built is None:
        runtime = current_app.extensions["ociregistry"]
        if not runtime.settings.events.enabled:
            abort(404, description="Events are disabled (events.enabled: false).")
        built = EventsService(runtime.metadata, runtime.settings.events)
        current_app.extensions[EXTENSION] = built
    return built


def _require_admin() -> Response | None:
    if access.policy() is None:
        if not is_local(request.environ):
            abort(403, description="Without authentication, events are managed from the "
                                   "registry host only.")
        return None
    if access.viewer().anonymous:
        return redirect(url_for("ui.login", next=request.path))
    if not access.is_admin():
        abort(403, description="Only an administrator may manage events.")
    return None


def may_manage_events() -> bool:
    if not current_app.extensions["ociregistry"].settings.events.enabled:
        return False
    if access.policy() is None:
        return is_local(request.environ)
    return not access.viewer().anonymous and access.is_admin()


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {"may_manage_events": may_manage_events}


def _globs(text: str) -> list[str]:
    return [g for g in text.replace(",", " ").split() if g][:32]


def _page(status: int = 200, **context: Any) -> tuple[str, int]:
    service = _service()
    selected = request.args.get("show", "")[:64]
    endpoints = service.endpoints()
    log = []
    if selected and any(e["name"] == selected for e in endpoints):
        log = service.deliveries(selected, 50, None, None)
    return render_template("ui/events.html", endpoints=endpoints, selected=selected, log=log,
                           formats=FORMATS, recent=service.events(20, None, None, None),
                           batch_default=service.settings.batch.max_events,
                           **context), status


@bp.get("/events")
def events_page() -> Response | tuple[str, int]:
    return _require_admin() or _page()


@bp.post("/events")
def events_create() -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    form = request.form
    body: dict[str, Any] = {
        "name": form.get("name", "").strip()[:64], "url": form.get("url", "").strip()[:2000],
        "format": form.get("format", "plain")[:16],
        "actions": _globs(form.get("actions", "")[:4000]),
        "repositories": _globs(form.get("repositories", "")[:4000]),
    }
    batch = form.get("batch_max_events", "").strip()[:8]
    if batch:
        # Not a number: left for the service to refuse, naming the field.
        body["batch_max_events"] = int(batch) if batch.isdigit() else batch
    try:
        created = _service().create(body)
    except AdminError as exc:
        return _page(exc.status, error=exc.message, form=form)
    return _page(201, created=created)


def _endpoint_action(name: str, action: str) -> Response:
    denied = _require_admin()
    if denied is not None:
        return denied
    service = _service()
    try:
        if action == "enable":
            service.update(name, {"enabled": True})
            flash(f"{name} enabled: delivery resumes where it stopped.", "success")
        elif action == "disable":
            service.update(name, {"enabled": False})
            flash(f"{name} disabled: events wait for it.", "success")
        elif action == "test":
            result = service.test(name)
            if result["delivered"]:
                flash(f"Test event delivered to {name}: {result['status_code']} in "
                      f"{result['latency_ms']} ms.", "success")
            else:
                flash(f"Test event to {name} failed: "
                      f"{result['error'] or result['status_code']}", "error")
        elif action == "delete":
            service.delete(name)
            flash(f"{name} deleted.", "success")
            return redirect(url_for("ui.events_page"), code=303)
    except AdminError as exc:
        flash(exc.message, "error")
    return redirect(url_for("ui.events_page", show=name), code=303)


@bp.post("/events/<name>/<action>")
def events_endpoint_action(name: str, action: str) -> Response:
    if action not in ("enable", "disable", "test", "delete"):
        abort(404)
    return _endpoint_action(name[:64], action)
