"""The /v2/ API: parse the request, call the core, shape the response."""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, current_app, g, request, send_file
from werkzeug.exceptions import ClientDisconnected

from ociregistry import metrics
from ociregistry.core import hashpipe
from ociregistry.core import media_types as mt
from ociregistry.core.errors import (
    BlobUnknown,
    BlobUploadInvalid,
    DigestInvalid,
    ManifestInvalid,
    RangeInvalid,
    RegistryError,
    SizeInvalid,
    Unsupported,
)
from ociregistry.core.gc import GCAlreadyRunning
from ociregistry.core.names import validate_name
from ociregistry.core.registry import BlobInfo, Registry
from ociregistry.core.uploads import UploadState, parse_content_range
from ociregistry.runtime import Runtime
from ociregistry.web import auth as access
from ociregistry.web import fast_blobs, mirror_api
from ociregistry.web.body import BufferLease, MalformedBody, body_chunks
from ociregistry.web.v2_paging import next_link, page_args

bp = Blueprint("registry_api", __name__)

# name is greedy up to the last keyword, as names may contain slashes.
_ROUTES = [
    ("manifest", re.compile(r"^(?P<name>.+)/manifests/(?P<ref>[^/]+)$")),
    ("upload", re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<upload>[^/]*)$")),
    ("blob", re.compile(r"^(?P<name>.+)/blobs/(?P<digest>[^/]+)$")),
    ("tags", re.compile(r"^(?P<name>.+)/tags/list$")),
    ("referrers", re.compile(r"^(?P<name>.+)/referrers/(?P<digest>[^/]+)$")),
]


# Route templates for metrics labels (the names themselves would be unbounded).
_ROUTE_LABELS = {
    "manifest": "/v2/{name}/manifests/{reference}",
    "upload": "/v2/{name}/blobs/uploads/{id}",
    "blob": "/v2/{name}/blobs/{digest}",
    "tags": "/v2/{name}/tags/list",
    "referrers": "/v2/{name}/referrers/{digest}",
}


def _runtime() -> Runtime:
    return current_app.extensions["ociregistry"]


def _registry() -> Registry:
    return _runtime().registry


def _body_chunks() -> Iterator[bytes | memoryview]:
    g.bytes_in = 0
    timeout = _runtime().settings.http.timeout
    # Reused buffers, given back when the request ends (_release_body_buffers).
    g.body_lease = lease = BufferLease()
    for chunk in body_chunks(request.environ, request.stream, timeout, ring=hashpipe.BUFFERS,
                             lease=lease):
        g.bytes_in += len(chunk)
        yield chunk


@contextmanager
def _receiving_body() -> Iterator[None]:
    """Turn I/O failures while taking a body in into spec errors.

    The core has already rolled the upload back to its previous offset.
    """
    metrics.UPLOADS_IN_PROGRESS.inc()
    try:
        yield
    except ClientDisconnected as exc:
        raise BlobUploadInvalid("the request body ended early") from exc
    except MalformedBody as exc:
        raise BlobUploadInvalid(exc.description) from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BlobUploadInvalid("the registry's storage is full", status=507) from exc
        if isinstance(exc, TimeoutError):
            raise BlobUploadInvalid("the client stopped sending", status=408) from exc
        raise
    finally:
        metrics.UPLOADS_IN_PROGRESS.dec()


@bp.route("/v2/", methods=["GET"])
def base() -> Response:
    return Response("{}", mimetype="application/json")


@bp.route("/v2/_catalog", methods=["GET"])
def catalog() -> Response:
    n, last = page_args()
    allowed = access.catalog_filter()
    if allowed is None:
        names = _registry().catalog(None if n is None else n + 1, last)
    else:
        names = access.filtered_catalog(_registry(), allowed, n, last)
    response = Response(mimetype="application/json")
    if n is not None and len(names) > n:
        names = names[:n]
        if names:  # n=0 asks for nothing: no next page either (spec: no Link)
            response.headers["Link"] = next_link("/v2/_catalog", n, names[-1])
    response.set_data(json.dumps({"repositories": names}))
    return response


@bp.route("/v2/gc", methods=["POST"])
def run_gc() -> Response:
    # An admin; without authentication, only the registry host itself.
    access.require_admin()
    dry_run = request.args.get("dry_run", "").lower() in ("1", "true", "yes")
    raw = request.args.get("delete_untagged")
    if raw is None:
        delete_untagged = _runtime().settings.gc.delete_untagged
    else:
        delete_untagged = raw.lower() in ("1", "true", "yes")
    try:
        result = _runtime().gc.run(dry_run=dry_run, delete_untagged=delete_untagged)
    except GCAlreadyRunning as exc:
        raise RegistryError(str(exc), status=409) from exc
    return Response(json.dumps(result.as_dict()), mimetype="application/json")


@bp.route("/v2/<path:rest>", methods=["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"])
def dispatch(rest: str) -> Response:
    for kind, pattern in _ROUTES:
        match = pattern.match(rest)
        if match:
            g.route = _ROUTE_LABELS[kind]
            params = match.groupdict()
            validate_name(params["name"])
            # Pull-through cache: mirrored content lives under its local name.
            mirrored = mirror_api.route(kind, params["name"])
            if mirrored is not None:
                params["name"] = mirrored.local_name
            handler = _HANDLERS.get((kind, request.method))
            if handler is None:
                raise Unsupported(f"{request.method} is not supported here")
            access.authorize(kind, request.method, params["name"])
            if mirrored is not None:
                return mirror_api.handle(mirrored, kind, handler, params)
            return handler(**params)
    raise Unsupported("no such endpoint", status=404)


# -- manifests ------------------------------------------------------------
def _accept_list() -> list[str]:
    values = request.headers.getlist("Accept")
    return [part.split(";", 1)[0].strip() for v in values for part in v.split(",") if part.strip()]


def get_manifest(name: str, ref: str) -> Response:
    row = _registry().manifest(name, ref, _accept_list())
    response = Response(row.payload, mimetype=None)
    response.headers["Content-Type"] = row.media_type
    response.headers["Docker-Content-Digest"] = row.digest
    response.headers["ETag"] = f'"{row.digest}"'
    if row.subject:
        response.headers["OCI-Subject"] = row.subject
    if request.method == "GET":  # a pull (HEADs are not): counted and an event, both batched
        _registry().record_pull(name, ref, row.digest)
        _registry().manifest_pulled(name, ref, row)
    return response


def put_manifest(name: str, ref: str) -> Response:
    limit = _registry().options.max_manifest_size
    if request.content_length is not None and request.content_length > limit:
        raise ManifestInvalid("manifest too large", {"max": limit}, status=413)
    payload = bytearray()
    try:
        # The same socket reader as blob bodies (gunicorn's own reads 1 KiB at a time).
        for chunk in _body_chunks():
            payload += chunk
            if len(payload) > limit:
                raise ManifestInvalid("manifest too large", {"max": limit}, status=413)
    except ClientDisconnected:
        # The client hung up mid-body (with or without a Content-Length): store nothing.
        raise ManifestInvalid(
            "request body ended early",
            {"expected": request.content_length, "received": len(payload)},
        ) from None
    except MalformedBody as exc:
        raise ManifestInvalid(exc.description) from exc
    pushed = _registry().put_manifest(
        name, ref, bytes(payload), request.headers.get("Content-Type"), request.args.getlist("tag")
    )
    response = Response(status=201)
    response.headers["Location"] = f"/v2/{name}/manifests/{pushed.digest}"
    response.headers["Docker-Content-Digest"] = pushed.digest
    if pushed.subject:
        response.headers["OCI-Subject"] = pushed.subject
    for tag in pushed.tags if request.args.getlist("tag") else []:
        response.headers.add("OCI-Tag", tag)
    return response


def delete_manifest(name: str, ref: str) -> Response:
    _registry().delete_manifest(name, ref)
    return Response(status=202)


# -- blobs ----------------------------------------------------------------
def _range_response(blob: BlobInfo) -> Response | None:
    """206 for a single satisfiable Range, read at its offset (no skipping through
    the file from its start), 416 for an unsatisfiable one; None: send it whole."""
    if "Range" not in request.headers:
        return None
    if_range = request.headers.get("If-Range")
    wanted = request.range
    if (if_range is not None and if_range.strip('"') != blob.digest) or (
        wanted is not None and len(wanted.ranges) != 1
    ):
        # Another version of the content, or a multi-part range: a full 200
        # answer is allowed, so hide the header from send_file.
        request.environ.pop("HTTP_RANGE", None)
        return None
    bounds = wanted.range_for_length(blob.size) if wanted is not None else None
    if bounds is None:
        raise RangeInvalid(
            "requested range not satisfiable",
            {"size": blob.size},
            headers={"Content-Range": f"bytes */{blob.size}"},
        )
    start, stop = bounds
    body: Any = b""
    if request.method != "HEAD":  # a HEAD never opens the blob
        try:
            body = _runtime().storage.read_blob_range(blob.digest, start, stop - start)
        except FileNotFoundError as exc:
            raise BlobUnknown("blob data missing from storage", {"digest": blob.digest}) from exc
    response = Response(body, status=206, mimetype="application/octet-stream")
    response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{blob.size}"
    response.headers["Content-Length"] = str(stop - start)
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["ETag"] = f'"{blob.digest}"'
    return response


def get_blob(name: str, digest: str) -> Response:
    blob = _registry().blob(name, digest)
    headers = {"Docker-Content-Digest": blob.digest}
    # HEAD is answered from the index alone; a GET may go to the store itself.
    url = _runtime().storage.blob_url(blob.digest) if request.method == "GET" else None
    if url is not None:
        response = Response(status=307)
        response.headers["Location"] = url
        response.headers.update(headers)
        return response
    if blob.path is None:
        response = _streamed_blob(blob)
    else:
        ranged = _range_response(blob)
        if ranged is not None:
            ranged.headers.update(headers)
            return ranged
        try:
            if fast_blobs.plain(request.environ):  # the common pull: send_file's answer, lean
                response = fast_blobs.file_response(request.environ, blob.path, blob.digest,
                                                    _runtime().storage)
                response.headers.update(headers)
                return response
            response = send_file(
                blob.path,
                mimetype="application/octet-stream",
                etag=blob.digest,
                conditional=True,
                max_age=31536000,
            )
        except FileNotFoundError as exc:
            raise BlobUnknown("blob data missing from storage", {"digest": digest}) from exc
    response.headers.update(headers)
    return response


def _streamed_blob(blob: BlobInfo) -> Response:
    """A blob from a driver without local files (S3 with redirects off): the same
    conditional and Range answers send_file gives; HEAD from the index alone."""
    if request.if_none_match.contains(blob.digest):
        response = Response(status=304)
    else:
        ranged = _range_response(blob)
        if ranged is not None:
            return ranged
        body: Any = b""
        if request.method != "HEAD":
            try:
                body = _runtime().storage.open_blob(blob.digest)
            except FileNotFoundError as exc:
                raise BlobUnknown("blob data missing from storage",
                                  {"digest": blob.digest}) from exc
        response = Response(body, mimetype="application/octet-stream")
        response.headers["Content-Length"] = str(blob.size)
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["ETag"] = f'"{blob.digest}"'
    response.headers["Cache-Control"] = "public, max-age=31536000"
    return response


def delete_blob(name: str, digest: str) -> Response:
    _registry().delete_blob(name, digest)
    return Response(status=202)


# -- uploads --------------------------------------------------------------
def _upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{quote(upload_id)}"


def _upload_response(name: str, state: UploadState, status: int) -> Response:
    response = Response(status=status)
    response.headers["Location"] = _upload_location(name, state.id)
    response.headers["Range"] = f"0-{max(state.offset - 1, 0)}"
    response.headers["Docker-Upload-UUID"] = state.id
    response.headers["Content-Length"] = "0"
    return response


def _blob_created(name: str, digest: str) -> Response:
    response = Response(status=201)
    response.headers["Location"] = f"/v2/{name}/blobs/{digest}"
    response.headers["Docker-Content-Digest"] = digest
    response.headers["Content-Length"] = "0"
    return response


def start_upload(name: str, upload: str) -> Response:
    if upload:
        raise Unsupported("POST goes to /blobs/uploads/")
    registry = _registry()
    mount = request.args.get("mount")
    if mount:
        source = request.args.get("from")
        if source is not None:
            validate_name(source)
        if access.may_mount_from(source) and (
            registry.uploads.mount(name, mount, source) is not None
        ):
            return _blob_created(name, mount)
    digest = request.args.get("digest")
    if digest:
        registry.uploads.precheck(name, request.content_length, digest)
        with _receiving_body():
            digest, _ = registry.uploads.monolithic(
                name, digest, _body_chunks(), owner=access.upload_owner()
            )
        return _blob_created(name, digest)
    algorithm = request.args.get("digest-algorithm", "sha256")
    state = registry.uploads.start(name, algorithm, owner=access.upload_owner())
    response = _upload_response(name, state, 202)
    return response


def _chunk_start() -> int | None:
    parsed = parse_content_range(request.headers.get("Content-Range"))
    if parsed is None:
        return None
    start, end = parsed
    length = request.content_length
    if length is not None and length != end - start + 1:
        raise SizeInvalid(
            "Content-Length does not match Content-Range",
            {"Content-Length": length, "Content-Range": request.headers["Content-Range"]},
            status=416,
        )
    return start


def patch_upload(name: str, upload: str) -> Response:
    uploads = _registry().uploads
    try:
        start = _chunk_start()
        uploads.precheck(name, request.content_length)
        with _receiving_body():
            state = uploads.append(
                name, upload, _body_chunks(), start, owner=access.upload_owner()
            )
    except RangeInvalid as exc:
        state = uploads.status(name, upload, owner=access.upload_owner())
        exc.headers.update(
            {"Location": _upload_location(name, upload), "Range": f"0-{max(state.offset - 1, 0)}"}
        )
        raise
    return _upload_response(name, state, 202)


def put_upload(name: str, upload: str) -> Response:
    digest = request.args.get("digest")
    if not digest:
        raise DigestInvalid("the digest query parameter is required")
    uploads = _registry().uploads
    try:
        start = _chunk_start()
        uploads.precheck(name, request.content_length, digest)
        with _receiving_body():
            digest, _ = uploads.finish(
                name, upload, digest, _body_chunks(), start, owner=access.upload_owner()
            )
    except RangeInvalid as exc:
        state = uploads.status(name, upload, owner=access.upload_owner())
        exc.headers.update(
            {"Location": _upload_location(name, upload), "Range": f"0-{max(state.offset - 1, 0)}"}
        )
        raise
    return _blob_created(name, digest)


def upload_status(name: str, upload: str) -> Response:
    state = _registry().uploads.status(name, upload, owner=access.upload_owner())
    return _upload_response(name, state, 204)


def cancel_upload(name: str, upload: str) -> Response:
    _registry().uploads.cancel(name, upload, owner=access.upload_owner())
    return Response(status=204)


# -- listings -------------------------------------------------------------
def list_tags(name: str) -> Response:
    n, last = page_args()
    array, last_tag, more = _registry().tags_json(name, n, last)
    # The array comes built from the database (JSON text); only the envelope is ours.
    response = Response(f'{{"name": {json.dumps(name)}, "tags": {array}}}',
                        mimetype="application/json")
    if n is not None and more and last_tag is not None:  # n=0: no Link (spec)
        response.headers["Link"] = next_link(f"/v2/{name}/tags/list", n, last_tag)
    return response


def list_referrers(name: str, digest: str) -> Response:
    artifact_type = request.args.get("artifactType") or None
    last = request.args.get("last") or None
    descriptors, more = _registry().referrers(name, digest, artifact_type, last)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
    response = Response(json.dumps(index), mimetype=None)
    response.headers["Content-Type"] = mt.OCI_INDEX
    if artifact_type is not None:
        response.headers["OCI-Filters-Applied"] = "artifactType"
    if more:
        extra = {"artifactType": artifact_type} if artifact_type else {}
        query = urlencode({**extra, "last": descriptors[-1]["digest"]})
        response.headers["Link"] = f'</v2/{name}/referrers/{digest}?{query}>; rel="next"'
    return response


_HANDLERS = {
    ("manifest", "GET"): get_manifest,
    ("manifest", "HEAD"): get_manifest,
    ("manifest", "PUT"): put_manifest,
    ("manifest", "DELETE"): delete_manifest,
    ("blob", "GET"): get_blob,
    ("blob", "HEAD"): get_blob,
    ("blob", "DELETE"): delete_blob,
    ("upload", "POST"): start_upload,
    ("upload", "PATCH"): patch_upload,
    ("upload", "PUT"): put_upload,
    ("upload", "GET"): upload_status,
    ("upload", "DELETE"): cancel_upload,
    ("tags", "GET"): list_tags,
    ("referrers", "GET"): list_referrers,
}


@bp.teardown_request
def _release_body_buffers(_exc: BaseException | None) -> None:
    # The upload service has joined its helper threads before returning: nothing
    # reads these buffers any more.
    lease = g.pop("body_lease", None)
    if lease is not None:
        lease.release()
