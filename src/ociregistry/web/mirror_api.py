"""The /v2 side of the pull-through cache: route a request to an upstream, answer
mirrored manifests and blobs (streamed on a miss), mark stale answers.

Called from registry_api.dispatch; the rules live in mirror/service.py and
mirror/fill.py. Headers of a mirrored answer:

- ``OCI-Namespace: <host>`` when ``?ns=<host>`` chose the upstream;
- ``X-Registry-Mirror: hit | revalidated | miss | stale``;
- a stale answer also ``Warning: 110 - "Response is Stale"`` and
  ``X-Registry-Mirror-Stale-Seconds`` (seconds since upstream last confirmed it).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, current_app, request

from ociregistry.core.registry import BlobInfo
from ociregistry.mirror.fill import StreamedBlob
from ociregistry.mirror.routing import Route
from ociregistry.mirror.service import MirrorService
from ociregistry.web.v2_paging import next_link, page_args

READS = ("GET", "HEAD")


def _mirror() -> MirrorService | None:
    return current_app.extensions["ociregistry"].mirror


def route(kind: str, name: str) -> Route | None:
    """The mirror route of this request (raises the OCI error of a bad ``ns``)."""
    mirror = _mirror()
    ns = request.args.get("ns")
    if mirror is None or kind not in ("manifest", "blob", "tags", "upload", "referrers"):
        return None
    return mirror.route(name, ns, request.method)


def handle(route: Route, kind: str, handler: Callable[..., Response],
           params: dict[str, str]) -> Response:
    """Answer a request for mirrored content (already authorized on the local name)."""
    mirror = _mirror()
    assert mirror is not None
    if request.method not in READS:
        mirror.check_write(route, request.method)
        response = handler(**params)
    elif kind == "manifest":
        served = mirror.manifest(route, params["ref"])
        response = handler(**params)
        response.headers["X-Registry-Mirror"] = served.result
        if served.result == "stale":
            response.headers["Warning"] = '110 - "Response is Stale"'
            if served.stale_seconds is not None:
                response.headers["X-Registry-Mirror-Stale-Seconds"] = str(
                    int(served.stale_seconds))
    elif kind == "blob":
        blob = mirror.fills.blob(route, params["digest"], request.method == "HEAD")
        if isinstance(blob, StreamedBlob):
            response = _streamed(blob)
        elif blob.path is None and request.method == "HEAD":
            response = _head(blob)
        else:
            response = handler(**params)
            response.headers.setdefault("X-Registry-Mirror", "hit")
    elif kind == "tags":
        response = _tags(mirror, route, params["name"], handler)
    else:  # referrers: what the cache holds
        response = handler(**params)
    if route.namespace:
        response.headers["OCI-Namespace"] = route.namespace
    return response


def _streamed(blob: StreamedBlob) -> Response:
    # Not direct_passthrough: werkzeug then runs the close callbacks (access log, metrics).
    response = Response(blob.chunks, mimetype="application/octet-stream")
    if blob.size is not None:
        response.headers["Content-Length"] = str(blob.size)
    response.headers["Docker-Content-Digest"] = blob.digest
    response.headers["ETag"] = f'"{blob.digest}"'
    response.headers["X-Registry-Mirror"] = "miss"
    return response


def _head(blob: BlobInfo) -> Response:
    response = Response(mimetype="application/octet-stream")
    response.headers["Content-Length"] = str(blob.size)
    response.headers["Docker-Content-Digest"] = blob.digest
    response.headers["X-Registry-Mirror"] = "miss"
    return response


def _tags(mirror: MirrorService, route: Route, name: str,
          handler: Callable[..., Response]) -> Response:
    """The upstream's tag list (paginated here); the cached tags when upstream fails."""
    import json


    n, last = page_args()
    tags = mirror.tags(route)
    if tags is None:
        response = handler(name=name)
        response.headers["X-Registry-Mirror"] = "stale"
        return response
    if last:
        tags = [t for t in tags if t > last]
    response = Response(mimetype="application/json")
    if n is not None and len(tags) > n:
        tags = tags[:n]
        if tags:
            response.headers["Link"] = next_link(f"/v2/{name}/tags/list", n, tags[-1])
    response.set_data(json.dumps({"name": name, "tags": tags}))
    response.headers["X-Registry-Mirror"] = "miss"
    return response
